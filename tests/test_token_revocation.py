"""A password change revokes the user's API tokens on every path; a user can sign out everywhere."""

from io import StringIO

import pytest
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import User
from tests.factories import PASSWORD, TokenFactory, UserFactory

pytestmark = pytest.mark.django_db

SALES = "/api/v1/flashsales/"
LOGIN = "/api/v1/auth/login"
LOGOUT_ALL = "/api/v1/auth/logout-all"
NEW_PASSWORD = "a-long-unusual-passphrase-42"


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def cached_token_of(user) -> APIClient:
    """A client whose token works and is now in the token cache (the case that outlives a delete)."""
    client = client_with(TokenFactory(user=user).key)
    assert client.get(SALES).status_code == 200
    return client


def assert_refused(response):
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize("update_fields", [None, ["password"]])
def test_set_password_and_save_revokes_every_token_of_the_user(buyer, update_fields):
    old = cached_token_of(buyer)
    bystander = cached_token_of(UserFactory())

    buyer.set_password(NEW_PASSWORD)
    buyer.save(update_fields=update_fields)

    assert not Token.objects.filter(user=buyer).exists()
    assert_refused(old.get(SALES))
    assert bystander.get(SALES).status_code == 200
    login = APIClient().post(LOGIN, {"email": buyer.email, "password": NEW_PASSWORD}, format="json")
    assert login.status_code == 200
    assert client_with(login.json()["data"]["token"]).get(SALES).status_code == 200


def test_changepassword_command_revokes_the_users_tokens(buyer, monkeypatch):
    old = cached_token_of(buyer)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": NEW_PASSWORD)

    call_command("changepassword", buyer.email, stdout=StringIO())

    assert not Token.objects.filter(user=buyer).exists()
    assert_refused(old.get(SALES))


@pytest.fixture
def superuser_browser(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True, email="boss@example.com"))
    return client


def test_a_password_set_in_the_admin_revokes_the_users_tokens(superuser_browser, buyer):
    old = cached_token_of(buyer)
    url = reverse("admin:auth_user_password_change", args=[buyer.pk])

    response = superuser_browser.post(
        url, {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )

    assert response.status_code == 302
    assert User.objects.get(pk=buyer.pk).check_password(NEW_PASSWORD)
    assert not Token.objects.filter(user=buyer).exists()
    assert_refused(old.get(SALES))


def test_disabling_password_sign_in_in_the_admin_revokes_the_users_tokens(superuser_browser, buyer):
    old = cached_token_of(buyer)
    url = reverse("admin:auth_user_password_change", args=[buyer.pk])

    response = superuser_browser.post(
        url, {"usable_password": "false", "unset-password": "Disable password-based authentication"}
    )

    assert response.status_code == 302
    assert not User.objects.get(pk=buyer.pk).has_usable_password()
    assert not Token.objects.filter(user=buyer).exists()
    assert_refused(old.get(SALES))


def test_saving_a_user_without_a_new_password_keeps_their_tokens(buyer):
    kept = cached_token_of(buyer)

    buyer.name = "Renamed"
    buyer.save()
    User.objects.get(pk=buyer.pk).save()

    assert Token.objects.filter(user=buyer).count() == 1
    assert kept.get(SALES).status_code == 200


def test_a_service_account_without_a_password_keeps_its_token_when_saved():
    robot = UserFactory(password=make_password(None))
    kept = cached_token_of(robot)

    loaded = User.objects.get(pk=robot.pk)
    loaded.name = "Robot"
    loaded.save()

    assert kept.get(SALES).status_code == 200


def test_a_login_that_upgrades_the_password_hash_keeps_the_users_token():
    # Django re-hashes on login when the stored hash uses an older hasher: not a password change.
    buyer = UserFactory(password=make_password(PASSWORD, hasher="pbkdf2_sha1"))
    kept = cached_token_of(buyer)

    login = APIClient().post(LOGIN, {"email": buyer.email, "password": PASSWORD}, format="json")

    assert login.status_code == 200
    assert User.objects.get(pk=buyer.pk).password.startswith("pbkdf2_sha256$")
    assert Token.objects.filter(user=buyer).count() == 1
    assert kept.get(SALES).status_code == 200


def test_logout_all_deletes_every_token_of_the_caller_only(buyer):
    mine = cached_token_of(buyer)
    other = cached_token_of(UserFactory())

    response = mine.post(LOGOUT_ALL)

    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Logged out everywhere", "data": {}}
    assert not Token.objects.filter(user=buyer).exists()
    assert_refused(mine.get(SALES))
    assert other.get(SALES).status_code == 200


def test_logout_all_without_a_token_is_401_and_deletes_nothing(buyer):
    TokenFactory(user=buyer)

    response = APIClient().post(LOGOUT_ALL)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert Token.objects.filter(user=buyer).exists()
