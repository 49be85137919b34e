"""Users and API tokens in the admin: email logins, hashed passwords, tokens managed by user."""

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import User
from tests.admin_pages import form_data
from tests.factories import PASSWORD, TokenFactory, UserFactory

pytestmark = pytest.mark.django_db

USERS = reverse("admin:accounts_user_changelist")
ADD_USER = reverse("admin:accounts_user_add")
TOKENS = reverse("admin:authtoken_tokenproxy_changelist")
ADD_TOKEN = reverse("admin:authtoken_tokenproxy_add")
NEW_PASSWORD = "a-long-unusual-passphrase-42"


@pytest.fixture
def superuser_browser(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True, email="boss@example.com"))
    return client


def new_user_form(**overrides) -> dict:
    return {
        "email": "New.Person@Example.com",
        "name": "New Person",
        "usable_password": "true",
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
        "_save": "Save",
        **overrides,
    }


def test_user_pages_render_for_a_superuser(superuser_browser):
    user = UserFactory(email="ada@example.com", name="Ada")

    pages = {
        "changelist": superuser_browser.get(USERS),
        "add": superuser_browser.get(ADD_USER),
        "change": superuser_browser.get(reverse("admin:accounts_user_change", args=[user.pk])),
        "password": superuser_browser.get(reverse("admin:auth_user_password_change", args=[user.pk])),
    }

    assert {name: page.status_code for name, page in pages.items()} == dict.fromkeys(pages, 200)
    assert "ada@example.com" in pages["changelist"].content.decode()
    assert "Ada" in pages["change"].content.decode()


def test_adding_a_user_stores_a_hashed_password_and_the_canonical_email(superuser_browser):
    response = superuser_browser.post(ADD_USER, new_user_form())

    assert response.status_code == 302
    user = User.objects.get(email="new.person@example.com")
    assert user.name == "New Person"
    assert user.password != NEW_PASSWORD and user.password.startswith(("pbkdf2_", "argon2", "bcrypt", "scrypt"))
    assert user.check_password(NEW_PASSWORD)
    assert not user.is_staff


def test_adding_a_user_whose_email_differs_only_in_case_is_refused(superuser_browser):
    UserFactory(email="new.person@example.com")

    response = superuser_browser.post(ADD_USER, new_user_form(email="NEW.PERSON@example.COM"))

    assert response.status_code == 200
    assert "already exists" in " ".join(response.context["adminform"].form.errors["email"])
    assert User.objects.filter(email__iexact="new.person@example.com").count() == 1


def test_adding_a_user_with_a_weak_password_is_refused(superuser_browser):
    response = superuser_browser.post(ADD_USER, new_user_form(password1="12345678", password2="12345678"))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["password2"]
    assert not User.objects.filter(email="new.person@example.com").exists()


def test_changing_a_user_keeps_the_password_and_normalises_the_email(superuser_browser):
    user = UserFactory(email="ada@example.com", name="Ada")
    url = reverse("admin:accounts_user_change", args=[user.pk])
    data = form_data(superuser_browser.get(url).content.decode(), "user_form")
    data.update({"email": "Ada.Lovelace@Example.com", "name": "Ada Lovelace", "is_staff": "on", "_save": "Save"})

    response = superuser_browser.post(url, data)

    assert response.status_code == 302
    user.refresh_from_db()
    assert (user.email, user.name, user.is_staff) == ("ada.lovelace@example.com", "Ada Lovelace", True)
    assert user.check_password(PASSWORD)


def test_the_admin_sets_a_new_password_hashed(superuser_browser):
    user = UserFactory()
    url = reverse("admin:auth_user_password_change", args=[user.pk])

    response = superuser_browser.post(
        url, {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD) and not user.check_password(PASSWORD)


def test_user_search_finds_by_email_or_name(superuser_browser):
    ada = UserFactory(email="ada@example.com", name="Ada Lovelace")
    UserFactory(email="grace@example.com", name="Grace Hopper")

    by_email = superuser_browser.get(USERS, {"q": "ADA@"})
    by_name = superuser_browser.get(USERS, {"q": "lovelace"})

    assert [u.pk for u in by_email.context["cl"].result_list] == [ada.pk]
    assert [u.pk for u in by_name.context["cl"].result_list] == [ada.pk]


def test_staff_without_user_permissions_cannot_manage_users_or_tokens(client, staff):
    client.force_login(staff)

    for url in (USERS, ADD_USER, TOKENS, ADD_TOKEN):
        assert client.get(url).status_code == 403

    assert client.post(ADD_USER, new_user_form(is_superuser="on")).status_code == 403
    assert not User.objects.filter(email="new.person@example.com").exists()


def test_tokens_are_listed_searched_created_and_revoked_by_user(superuser_browser):
    ada = UserFactory(email="ada@example.com")
    grace_token = TokenFactory(user=UserFactory(email="grace@example.com"))

    listed = superuser_browser.get(TOKENS, {"q": "grace"})
    created = superuser_browser.post(ADD_TOKEN, {"user": ada.pk, "_save": "Save"})
    change_page = superuser_browser.get(reverse("admin:authtoken_tokenproxy_change", args=[ada.pk]))
    revoked = superuser_browser.post(
        reverse("admin:authtoken_tokenproxy_delete", args=[grace_token.user_id]), {"post": "yes"}
    )

    assert listed.status_code == 200
    assert [token.key for token in listed.context["cl"].result_list] == [grace_token.key]
    assert created.status_code == 302
    assert change_page.status_code == 200
    assert revoked.status_code == 302
    assert list(Token.objects.values_list("user__email", flat=True)) == ["ada@example.com"]
    assert len(Token.objects.get(user=ada).key) == 40


def test_the_token_user_picker_searches_users_by_email(superuser_browser):
    ada = UserFactory(email="ada@example.com")
    UserFactory(email="grace@example.com")

    response = superuser_browser.get(
        reverse("admin:autocomplete"),
        {"app_label": "authtoken", "model_name": "tokenproxy", "field_name": "user", "term": "ada"},
    )

    assert response.status_code == 200
    assert [item["id"] for item in response.json()["results"]] == [str(ada.pk)]


def test_a_token_deleted_in_the_admin_stops_authenticating_at_once(superuser_browser):
    token = TokenFactory()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get("/api/v1/flashsales/").status_code == 200  # now cached by the token auth

    superuser_browser.post(reverse("admin:authtoken_tokenproxy_delete", args=[token.user_id]), {"post": "yes"})

    assert not Token.objects.filter(key=token.key).exists()
    assert api.get("/api/v1/flashsales/").status_code == 401


def test_a_user_deactivated_in_the_admin_stops_authenticating_at_once(superuser_browser):
    token = TokenFactory()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get("/api/v1/flashsales/").status_code == 200
    url = reverse("admin:accounts_user_change", args=[token.user_id])
    data = form_data(superuser_browser.get(url).content.decode(), "user_form")
    data.pop("is_active")
    data["_save"] = "Save"

    assert superuser_browser.post(url, data).status_code == 302

    assert api.get("/api/v1/flashsales/").status_code == 401


def test_admin_sign_in_is_rate_limited_like_the_api_login(client, settings):
    settings.RATELIMIT_ENABLE = True
    settings.RATELIMIT_LOGIN = "100/m"
    settings.RATELIMIT_LOGIN_FAILURES = "2/d"
    UserFactory(email="boss@example.com", is_staff=True)
    login = reverse("admin:login")

    guesses = [client.post(login, {"username": "Boss@example.com", "password": "wrong"}) for _ in range(2)]
    blocked = client.post(login, {"username": "boss@example.com", "password": PASSWORD})

    assert [guess.status_code for guess in guesses] == [200, 200]
    assert blocked.status_code == 429
    assert int(blocked["Retry-After"]) >= 1
    assert "_auth_user_id" not in client.session
    other = client.post(login, {"username": "someone@example.com", "password": "wrong"})
    assert other.status_code == 200


def test_staff_sign_in_through_the_admin_login_page(client):
    staff = UserFactory(email="boss@example.com", is_staff=True)

    response = client.post(reverse("admin:login"), {"username": "Boss@Example.com", "password": PASSWORD})

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(staff.pk)
