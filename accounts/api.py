from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.views import APIView

from accounts import services
from accounts.exceptions import EmailTaken, InvalidCredentials
from accounts.serializers import LoginResultSerializer, LoginSerializer, RegisteredUserSerializer, RegisterSerializer
from core.error_codes import ErrorCode
from core.ratelimit import rate_limit
from core.responses import success
from core.schema import BODY, TOKEN, errors, ok


class RegisterView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=["auth"],
        summary="Create a buyer account",
        request=RegisterSerializer,
        responses={
            **ok(201, "RegisterResponse", RegisteredUserSerializer),
            **errors(BODY, EmailTaken, ErrorCode.RATE_LIMITED),
        },
    )
    @rate_limit(group="register", key="ip", rate_setting="RATELIMIT_REGISTER")
    def post(self, request):
        form = RegisterSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        user = services.register(**form.validated_data)
        return success(
            {"userId": user.pk, "name": user.name, "email": user.email},
            "Registration successful",
            status=201,
        )


class LoginView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=["auth"],
        summary="Exchange email and password for an API token",
        description="Rate limited per client IP; wrong passwords are limited per (email, client IP) and, "
        "for addresses that already failed, per email. Wrong email and wrong password get the same 401.",
        request=LoginSerializer,
        responses={
            **ok(200, "LoginResponse", LoginResultSerializer),
            **errors(BODY, InvalidCredentials, ErrorCode.RATE_LIMITED),
        },
    )
    @rate_limit(group="login", key="ip", rate_setting="RATELIMIT_LOGIN")
    def post(self, request):
        form = LoginSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        user, token = services.login(request=request._request, **form.validated_data)
        return success({"userId": user.pk, "token": token.key}, "Login successful")


class LogoutView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["auth"],
        summary="Delete the caller's API token",
        request=None,
        responses={**ok(200, "LogoutResponse", None), **errors(TOKEN)},
    )
    def post(self, request):
        services.logout(user=request.user)
        return success({}, "Logged out")


class LogoutEverywhereView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["auth"],
        summary="Delete every API token of the caller (sign out on every device)",
        request=None,
        responses={**ok(200, "LogoutEverywhereResponse", None), **errors(TOKEN)},
    )
    def post(self, request):
        services.logout_everywhere(user=request.user)
        return success({}, "Logged out everywhere")
