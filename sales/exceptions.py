from flashsale.errors import ServiceError


class SalesError(ServiceError):
    """Base of every error the sales rules raise."""


class SaleNotFound(SalesError):
    status_code = 404
    code = "sale_not_found"
    default_message = "No flash sale with this id."


class NoActiveSale(SalesError):
    status_code = 404
    code = "no_active_sale"
    default_message = "No flash sale is active right now."


class SaleNotActive(SalesError):
    status_code = 409
    code = "sale_not_active"
    default_message = "This flash sale is not active."


class SoldOut(SalesError):
    status_code = 409
    code = "sold_out"
    default_message = "This flash sale is sold out."


class InsufficientStock(SalesError):
    status_code = 409
    code = "insufficient_stock"
    default_message = "Not enough stock left for this quantity."


class UserLimitReached(SalesError):
    status_code = 409
    code = "user_limit_reached"
    default_message = "You have reached the maximum number of units for this sale."


class VersionConflict(SalesError):
    status_code = 409
    code = "version_conflict"
    default_message = "This sale changed since you read it. Reload it and try again."


class InvalidSaleChange(SalesError):
    """An edit that would break the sale's window or stock rules."""

    status_code = 400
    code = "validation_error"
    default_message = "The request is invalid."
