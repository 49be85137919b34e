from core.error_codes import ErrorCode
from core.errors import ServiceError


class AccountsError(ServiceError):
    """Base of every error the accounts rules raise."""


class EmailTaken(AccountsError):
    code = ErrorCode.EMAIL_TAKEN


class InvalidCredentials(AccountsError):
    code = ErrorCode.INVALID_CREDENTIALS


class WeakPassword(AccountsError):
    """Django's password validators refused the password; reported like any invalid field."""

    code = ErrorCode.VALIDATION_ERROR

    def __init__(self, messages: list[str]):
        super().__init__(details={"password": messages})


class AccountDeleted(AccountsError):
    """The token was accepted from the cache, but its user is gone from the database."""

    code = ErrorCode.AUTHENTICATION_FAILED
    default_message = "This account no longer exists."
