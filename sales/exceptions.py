from core.error_codes import ErrorCode
from core.errors import ServiceError


class SalesError(ServiceError):
    """Base of every error the sales rules raise."""


class SaleNotFound(SalesError):
    code = ErrorCode.SALE_NOT_FOUND


class NoActiveSale(SalesError):
    code = ErrorCode.NO_ACTIVE_SALE


class SaleNotActive(SalesError):
    code = ErrorCode.SALE_NOT_ACTIVE


class SoldOut(SalesError):
    code = ErrorCode.SOLD_OUT


class SalePaused(SalesError):
    code = ErrorCode.SALE_PAUSED


class InsufficientStock(SalesError):
    code = ErrorCode.INSUFFICIENT_STOCK


class UserLimitReached(SalesError):
    code = ErrorCode.USER_LIMIT_REACHED


class PurchaseNotFound(SalesError):
    code = ErrorCode.PURCHASE_NOT_FOUND


class HoldExpired(SalesError):
    code = ErrorCode.HOLD_EXPIRED


class HoldReleased(SalesError):
    code = ErrorCode.HOLD_RELEASED


class HoldConfirmed(SalesError):
    code = ErrorCode.HOLD_CONFIRMED


class NoWaitingRoom(SalesError):
    code = ErrorCode.NO_WAITING_ROOM


class QueueNotOpen(SalesError):
    code = ErrorCode.QUEUE_NOT_OPEN


class NotInQueue(SalesError):
    code = ErrorCode.NOT_IN_QUEUE


class ChallengeFailed(SalesError):
    code = ErrorCode.CHALLENGE_FAILED


class NotAdmitted(SalesError):
    code = ErrorCode.NOT_ADMITTED


class AdmissionExpired(SalesError):
    code = ErrorCode.ADMISSION_EXPIRED


class VersionConflict(SalesError):
    code = ErrorCode.VERSION_CONFLICT


class InvalidSaleChange(SalesError):
    """An edit that would break the sale's window or stock rules."""

    code = ErrorCode.VALIDATION_ERROR


class OverPurchaseLimit(SalesError):
    """More units in one purchase than the sale allows (its maxPerPurchase)."""

    code = ErrorCode.VALIDATION_ERROR
