import unicodedata
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.utils import timezone

from accounts.validators import validate_display_name


def normalize_email(email: str) -> str:
    """The one form of an email that is stored and compared: NFKC, the domain in IDNA's ASCII form,
    lower case.

    Two spellings a person cannot tell apart are one address: NFKC folds compatibility characters
    (a full-width "ｅ" is "e"), and IDNA spells an internationalised domain as the ASCII name mail
    is delivered to ("bücher.de" is "xn--bcher-kva.de"; Python's codec applies nameprep, which folds
    case and compatibility forms in the domain too). A domain IDNA cannot encode is kept as typed,
    for the email validator to refuse.
    """
    email = unicodedata.normalize("NFKC", email).strip()
    local, at, domain = email.rpartition("@")
    if at:
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            pass
        email = f"{local}@{domain}"
    return email.lower()


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def get_by_natural_key(self, email):
        return self.get(email=normalize_email(email))

    def _create_user(self, email: str, name: str, password: str | None, **extra_fields: Any) -> "User":
        if not email:
            raise ValueError("Users must have an email address")
        user = self.model(email=normalize_email(email), name=name, **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, name: str = "", password: str | None = None, **extra_fields: Any) -> "User":
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, name, password, **extra_fields)

    def create_superuser(self, email: str, name: str = "", password: str | None = None, **extra_fields: Any) -> "User":
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        if not extra_fields["is_staff"] or not extra_fields["is_superuser"]:
            raise ValueError("A superuser must have is_staff=True and is_superuser=True")
        return self._create_user(email, name, password, **extra_fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A buyer or a staff member. The email is the login name."""

    email = models.EmailField("email address", max_length=254, unique=True)
    # Shown on the public leaderboard and live feed: no text-direction or invisible characters.
    name = models.CharField(max_length=150, validators=[validate_display_name])
    is_staff = models.BooleanField(default=False, help_text="Can log into the admin and manage sales.")
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["name"]

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.email

    def clean(self):
        super().clean()
        self.email = normalize_email(self.email)

    def save(self, *args, **kwargs):
        # Every path (admin, shell, createsuperuser) stores the canonical form, so the unique
        # constraint is case-insensitive in effect.
        self.email = normalize_email(self.email)
        super().save(*args, **kwargs)
