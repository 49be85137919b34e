"""Users and API tokens in the admin.

The custom user logs in by email and has no username, so Django's UserAdmin is given forms and
fieldsets for it. Unlike sales, users and tokens are managed under Django's model permissions
(superusers by default): an is_staff flag alone must not let someone grant themselves more.
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import forms as auth_forms
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from accounts.models import User, normalize_email


class CanonicalEmailFormField(forms.EmailField):
    """Normalised before it is validated, as the API's register does (accounts.serializers)."""

    def to_python(self, value):
        value = super().to_python(value)
        return normalize_email(value) if value else value


class _CanonicalEmail:
    """Emails are stored lower-case; normalise before the uniqueness check, so that a second
    "Ada@Example.com" is refused by the form instead of failing in the database."""

    cleaned_data: dict[str, Any]  # set by the form this is mixed into

    def clean_email(self):
        email = self.cleaned_data.get("email")
        return normalize_email(email) if email else email


class UserCreationForm(_CanonicalEmail, auth_forms.AdminUserCreationForm):
    """Email, name and a password (hashed by the form; validated by AUTH_PASSWORD_VALIDATORS)."""

    class Meta(auth_forms.AdminUserCreationForm.Meta):
        model = User
        fields = ("email", "name")
        field_classes = {"email": CanonicalEmailFormField}


class UserChangeForm(_CanonicalEmail, auth_forms.UserChangeForm):
    """The password shows as its hash summary, with a link to the admin's set-password form."""

    class Meta(auth_forms.UserChangeForm.Meta):
        model = User
        fields = "__all__"
        field_classes = {"email": CanonicalEmailFormField}


@admin.register(User)
class UserAdmin(auth_admin.UserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "name", "is_staff", "usable_password", "password1", "password2"),
            },
        ),
    )
    readonly_fields = ("last_login", "date_joined")
    list_display = ("email", "name", "is_staff", "is_active", "date_joined")
    list_filter = ("is_staff", "is_superuser", "is_active", "groups")
    search_fields = ("email", "name")
    ordering = ("-date_joined", "-id")
    date_hierarchy = "date_joined"


# rest_framework.authtoken registers its TokenAdmin (tokens are listed by user) with a plain select
# of every user; with many buyers that page would not load. Search users by email instead.
admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class FlashsaleTokenAdmin(TokenAdmin):
    autocomplete_fields = ("user",)
    search_help_text = "Search by user email."
    list_select_related = ("user",)
