from core.error_codes import ErrorCode
from core.errors import RateLimited, ServiceError


class IdempotencyError(ServiceError):
    """Base of every error raised while honouring an Idempotency-Key."""


class InvalidIdempotencyKey(IdempotencyError):
    code = ErrorCode.VALIDATION_ERROR


class IdempotencyKeyInUse(IdempotencyError):
    code = ErrorCode.IDEMPOTENCY_KEY_IN_USE


class IdempotencyKeyLimitReached(IdempotencyError, RateLimited):
    code = ErrorCode.IDEMPOTENCY_KEY_LIMIT_REACHED

    def __init__(self, *, limit: int, retry_after: int):
        super().__init__(retry_after, details={"limit": limit})


class IdempotencyKeyReused(IdempotencyError):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED
