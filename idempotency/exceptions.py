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


class IdempotencyKeyReused(IdempotencyError):
    status_code = 422
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was already used with a different request."
