from rest_framework import serializers

from accounts.models import normalize_email
from accounts.validators import validate_display_name


class CanonicalEmailField(serializers.EmailField):
    """An email in the one form accounts store and compare (accounts.models.normalize_email),
    validated in that form: a full-width "ＡＤＡ＠example.com" is the valid "ada@example.com"."""

    def to_internal_value(self, data):
        return normalize_email(super().to_internal_value(data))


class RegisterSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=150, trim_whitespace=True, validators=[validate_display_name])
    email = CanonicalEmailField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False, write_only=True)


class LoginSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False, write_only=True)


class RegisteredUserSerializer(serializers.Serializer):
    """`data` of a successful registration (documents the response in the OpenAPI schema)."""

    userId = serializers.IntegerField()
    name = serializers.CharField()
    email = serializers.EmailField()


class LoginResultSerializer(serializers.Serializer):
    """`data` of a successful login (documents the response in the OpenAPI schema)."""

    userId = serializers.IntegerField()
    token = serializers.CharField(help_text='Send it as "Authorization: Token <token>".')
