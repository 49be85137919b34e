from rest_framework import serializers


class RegisterSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=150, trim_whitespace=True)
    email = serializers.EmailField(max_length=254)
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
