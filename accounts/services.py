from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from rest_framework.authtoken.models import Token

from accounts.exceptions import AccountDeleted, EmailTaken, InvalidCredentials, WeakPassword
from accounts.login_limits import check_login_allowed
from accounts.models import User, normalize_email


def register(*, name: str, email: str, password: str) -> User:
    """Create a buyer account, or raise EmailTaken / WeakPassword."""
    email = normalize_email(email)
    candidate = User(name=name, email=email)
    try:
        validate_password(password, user=candidate)
    except DjangoValidationError as error:
        raise WeakPassword(list(error.messages)) from None
    if User.objects.filter(email=email).exists():
        raise EmailTaken()
    try:
        # The unique index is the authority when two registrations race past the check above.
        with transaction.atomic():
            return User.objects.create_user(email=email, name=name, password=password)
    except IntegrityError:
        raise EmailTaken() from None


def login(*, email: str, password: str, request: HttpRequest | None = None) -> tuple[User, Token]:
    """Check the credentials and return the user with their API token.

    Raises RateLimited when this client address has used up its wrong passwords for the email
    (accounts.login_limits). Unknown email and wrong password fail identically (Django's backend
    also spends the hashing time for unknown users), so the answer does not reveal which accounts
    exist.
    """
    if request is not None:
        check_login_allowed(request, email=email)  # a wrong password is counted by its signal
    user = authenticate(request, email=normalize_email(email), password=password)
    if user is None:
        raise InvalidCredentials()
    token, _ = Token.objects.get_or_create(user=user)
    return user, token


def logout(*, user: User) -> None:
    """Invalidate the user's API token.

    DRF's authtoken keeps one token per user, shared by every device that logged in, so this
    signs the user out everywhere too; `logout_everywhere` says so explicitly.
    """
    revoke_tokens(user_id=user.pk)


def logout_everywhere(*, user: User) -> None:
    """Delete every API token of the user: every device must log in again."""
    revoke_tokens(user_id=user.pk)


def revoke_tokens(*, user_id: int) -> int:
    """Delete the user's API tokens; their cached entries go with them (a delete signal)."""
    deleted, _ = Token.objects.filter(user_id=user_id).delete()
    return deleted


def raise_if_deleted(user: User) -> None:
    """Raise AccountDeleted if `user` no longer exists.

    A token served from the cache can outlive a user deleted straight in the database (for up to
    AUTH_TOKEN_CACHE_SECONDS); a write that then fails its foreign key asks this before it reports
    anything else.
    """
    if not User.objects.filter(pk=user.pk).exists():
        raise AccountDeleted()
