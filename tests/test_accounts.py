import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from accounts.models import User
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"


def test_register_creates_a_user_with_a_hashed_password(api):
    response = api.post(REGISTER, {"name": "Ada", "email": "Ada@Example.com", "password": PASSWORD}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True
    user = User.objects.get()
    assert body["data"] == {"userId": user.pk, "name": "Ada", "email": "ada@example.com"}
    assert user.password != PASSWORD and user.check_password(PASSWORD)


def test_register_with_a_taken_email_in_any_case_is_409_and_creates_nothing(api):
    UserFactory(email="ada@example.com")

    response = api.post(REGISTER, {"name": "Other", "email": "ADA@example.COM", "password": PASSWORD}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "email_taken"
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"name": "Ada", "email": "ada@example.com", "password": "short"}, "password"),
        ({"name": "Ada", "email": "ada@example.com", "password": "12345678901"}, "password"),
        ({"name": "Ada", "email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "ada@example.com", "password": PASSWORD}, "name"),
        ({"name": "Ada", "email": "ada@example.com"}, "password"),
    ],
)
def test_register_with_invalid_fields_is_400_with_field_details(api, payload, field):
    response = api.post(REGISTER, payload, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]
    assert User.objects.count() == 0


def test_login_returns_a_token_that_authenticates(api):
    user = UserFactory(email="ada@example.com")

    response = api.post(LOGIN, {"email": "ADA@example.com", "password": PASSWORD}, format="json")

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["userId"] == user.pk
    assert Token.objects.get(user=user).key == data["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {data['token']}")
    assert api.get("/api/v1/flashsales/").status_code == 200


def test_wrong_password_and_unknown_email_get_the_same_401(api):
    UserFactory(email="ada@example.com")

    wrong_password = api.post(LOGIN, {"email": "ada@example.com", "password": "nope-nope-nope"}, format="json")
    unknown_email = api.post(LOGIN, {"email": "nobody@example.com", "password": PASSWORD}, format="json")

    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.json()["error"]["code"] == "invalid_credentials"
    assert Token.objects.count() == 0


def test_inactive_user_cannot_log_in(api):
    UserFactory(email="ada@example.com", is_active=False)

    response = api.post(LOGIN, {"email": "ada@example.com", "password": PASSWORD}, format="json")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


@pytest.mark.parametrize("header", [None, "Token", "Token not-a-real-token", "Bearer abc", "Token a b"])
def test_protected_endpoint_without_a_valid_token_is_401_json(api, header):
    if header:
        api.credentials(HTTP_AUTHORIZATION=header)

    response = api.get("/api/v1/flashsales/active")

    assert response.status_code == 401
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] in {"not_authenticated", "authentication_failed"}


def test_a_bare_user_id_header_does_not_authenticate(api, buyer):
    # The old system trusted a `user-id` header; it must mean nothing here.
    response = api.get("/api/v1/flashsales/active", HTTP_USER_ID=str(buyer.pk))

    assert response.status_code == 401


def test_createsuperuser_noinput_from_environment(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "Boss@Example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    monkeypatch.setenv("DJANGO_SUPERUSER_NAME", "Boss")

    call_command("createsuperuser", interactive=False, verbosity=0)

    boss = User.objects.get()
    assert (boss.email, boss.name, boss.is_staff, boss.is_superuser) == ("boss@example.com", "Boss", True, True)
    assert boss.check_password(PASSWORD)
