from flashsale.errors import ServiceError


class AccountsError(ServiceError):
    """Base of every error the accounts rules raise."""


class EmailTaken(AccountsError):
    status_code = 409
    code = "email_taken"
    default_message = "An account with this email already exists."


class InvalidCredentials(AccountsError):
    status_code = 401
    code = "invalid_credentials"
    default_message = "The email or password is incorrect."


class WeakPassword(AccountsError):
    """Django's password validators refused the password; reported like any invalid field."""

    status_code = 400
    code = "validation_error"
    default_message = "The request is invalid."

    def __init__(self, messages: list[str]):
        super().__init__(details={"password": messages})


class AccountDeleted(AccountsError):
    """The token was accepted from the cache, but its user is gone from the database."""

    status_code = 401
    code = "authentication_failed"
    default_message = "This account no longer exists."
