"""Every error code the API can answer with, its HTTP status and its default message: the one registry.

Exceptions name a member (`code = ErrorCode.SOLD_OUT`) instead of repeating the code, status and
message; the exception handler, the plain-Django error responses and the OpenAPI error enums all read
them from here. A code is part of the API contract: add members, never rename one. The README's
"Error codes" table lists them for clients (tests/test_error_statuses.py checks the two agree).
"""

from enum import StrEnum


class ErrorCode(StrEnum):
    status: int
    message: str

    def __new__(cls, code: str, status: int, message: str) -> "ErrorCode":
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        member.message = message
        return member

    # Refusals of the request itself, before any rule runs. DRF's own codes keep DRF's names.
    VALIDATION_ERROR = "validation_error", 400, "The request is invalid."
    BAD_REQUEST = "bad_request", 400, "The request is malformed."
    NOT_AUTHENTICATED = "not_authenticated", 401, "Authentication credentials were not provided."
    AUTHENTICATION_FAILED = "authentication_failed", 401, "Incorrect authentication credentials."
    PERMISSION_DENIED = "permission_denied", 403, "You do not have permission to perform this action."
    NOT_FOUND = "not_found", 404, "Not found."
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, "This method is not allowed here."
    NOT_ACCEPTABLE = "not_acceptable", 406, "Could not satisfy the request Accept header."
    REQUEST_TIMEOUT = "request_timeout", 408, "The request body was not received in time. Send it again, in full."
    PAYLOAD_TOO_LARGE = "payload_too_large", 413, "The request body is too large."
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415, "The request body is not application/json."
    RATE_LIMITED = "rate_limited", 429, "Too many requests. Please slow down."

    # accounts
    INVALID_CREDENTIALS = "invalid_credentials", 401, "The email or password is incorrect."
    EMAIL_TAKEN = "email_taken", 409, "An account with this email already exists."

    # sales
    SALE_NOT_FOUND = "sale_not_found", 404, "No flash sale with this id."
    NO_ACTIVE_SALE = "no_active_sale", 404, "No flash sale is active right now."
    SALE_NOT_ACTIVE = "sale_not_active", 409, "This flash sale is not active."
    SOLD_OUT = "sold_out", 409, "This flash sale is sold out."
    INSUFFICIENT_STOCK = "insufficient_stock", 409, "Not enough stock left for this quantity."
    USER_LIMIT_REACHED = "user_limit_reached", 409, "You have reached the maximum number of units for this sale."
    VERSION_CONFLICT = "version_conflict", 409, "This sale changed since you read it. Reload it and try again."
    SALE_PAUSED = "sale_paused", 409, "This flash sale is paused. Try again when it resumes."
    # holds
    PURCHASE_NOT_FOUND = "purchase_not_found", 404, "You have no purchase with this id."
    HOLD_EXPIRED = "hold_expired", 409, "This hold expired: its units went back to the sale."
    HOLD_RELEASED = "hold_released", 409, "This hold was released: its units went back to the sale."
    HOLD_CONFIRMED = "hold_confirmed", 409, "This purchase is confirmed: it can no longer be released."
    # the waiting room
    NO_WAITING_ROOM = "no_waiting_room", 409, "This flash sale has no waiting room: buy directly."
    QUEUE_NOT_OPEN = "queue_not_open", 409, "The waiting room of this flash sale is not open yet."
    NOT_IN_QUEUE = "not_in_queue", 404, "You have no place in this flash sale's waiting room."
    NOT_ADMITTED = "not_admitted", 409, "It is not your turn yet: wait in this flash sale's waiting room."
    ADMISSION_EXPIRED = "admission_expired", 409, "Your turn to buy ran out."
    CHALLENGE_FAILED = (
        "challenge_failed",
        400,
        "This join needs a solved challenge of yours for this sale: fetch a new one and solve it.",
    )

    # idempotency
    IDEMPOTENCY_KEY_IN_USE = (
        "idempotency_key_in_use",
        409,
        "A request with this Idempotency-Key is still being processed. Retry shortly.",
    )
    IDEMPOTENCY_KEY_REUSED = (
        "idempotency_key_reused",
        422,
        "This Idempotency-Key was already used with a different request.",
    )
    IDEMPOTENCY_KEY_LIMIT_REACHED = (
        "idempotency_key_limit_reached",
        429,
        "You hold too many unexpired Idempotency-Keys. Retry later, or without a key.",
    )

    # The server's side.
    INTERNAL_ERROR = "internal_error", 500, "An unexpected error occurred."
    SERVICE_UNAVAILABLE = "service_unavailable", 503, "The service is temporarily unavailable. Please retry shortly."
