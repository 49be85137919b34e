from flashsale.errors import ServiceError


class IdempotencyError(ServiceError):
    """Base of every error raised while honouring an Idempotency-Key."""


class InvalidIdempotencyKey(IdempotencyError):
    status_code = 400
    code = "validation_error"
    default_message = "The request is invalid."


class IdempotencyKeyInUse(IdempotencyError):
    status_code = 409
    code = "idempotency_key_in_use"
    default_message = "A request with this Idempotency-Key is still being processed. Retry shortly."


class IdempotencyKeyLimitReached(IdempotencyError):
    status_code = 429
    code = "idempotency_key_limit_reached"
    default_message = "You hold too many unexpired Idempotency-Keys. Retry later, or without a key."

    def __init__(self, *, limit: int, retry_after: int):
        retry_after = max(1, retry_after)
        super().__init__(details={"limit": limit, "retryAfter": retry_after})
        self.headers = {"Retry-After": str(retry_after)}


class IdempotencyKeyReused(IdempotencyError):
    status_code = 422
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was already used with a different request."
