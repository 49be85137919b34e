"""Admin sessions and CSRF: cookies are HttpOnly/SameSite (Secure with HTTPS=true), forms need the
CSRF token, and a browser session never authenticates the token-only API."""

import json
import subprocess
import sys
from http.cookies import SimpleCookie

import httpx
import pytest
from django.test import Client, override_settings

from harness.servers import PROJECT_DIR, daphne_server, server_env
from sales.models import FlashSale, Purchase
from tests.factories import PASSWORD, SaleFactory, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"


def admin_login(client: Client, user) -> object:
    """Log in through the real admin form: GET it for the CSRF token, POST it back."""
    client.get(LOGIN)
    token = client.cookies["csrftoken"].value
    return client.post(
        LOGIN, {"username": user.email, "password": PASSWORD, "csrfmiddlewaretoken": token, "next": "/admin/"}
    )


def test_the_admin_login_form_refuses_a_post_without_the_csrf_token():
    staff = UserFactory(is_staff=True)
    client = Client(enforce_csrf_checks=True)

    forged = client.post(LOGIN, {"username": staff.email, "password": PASSWORD, "next": "/admin/"})

    assert forged.status_code == 403
    assert "sessionid" not in forged.cookies
    assert "_auth_user_id" not in client.session


def test_the_admin_login_form_refuses_a_token_that_does_not_match_the_cookie():
    staff = UserFactory(is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.get(LOGIN)

    forged = client.post(
        LOGIN, {"username": staff.email, "password": PASSWORD, "csrfmiddlewaretoken": "x" * 64, "next": "/admin/"}
    )

    assert forged.status_code == 403
    assert "sessionid" not in forged.cookies


def test_admin_login_with_the_csrf_token_sets_an_httponly_samesite_session_cookie_without_secure_over_http():
    staff = UserFactory(is_staff=True)
    client = Client(enforce_csrf_checks=True)

    form = client.get(LOGIN)
    response = admin_login(client, staff)

    assert response.status_code == 302 and response["Location"] == "/admin/"
    session = response.cookies["sessionid"]
    assert session["httponly"] is True
    assert session["samesite"] == "Lax"
    assert not session["secure"]
    csrf = form.cookies["csrftoken"]
    assert csrf["samesite"] == "Lax"
    assert not csrf["secure"]
    assert form["X-Frame-Options"] == "DENY"  # the login form cannot be framed (clickjacking)


@override_settings(SESSION_COOKIE_SECURE=True, CSRF_COOKIE_SECURE=True)
def test_with_secure_cookies_both_admin_cookies_are_marked_secure():
    staff = UserFactory(is_staff=True)
    client = Client(enforce_csrf_checks=True)

    form = client.get(LOGIN, secure=True)
    token = form.cookies["csrftoken"].value
    client.cookies["csrftoken"] = token
    response = client.post(
        LOGIN,
        {"username": staff.email, "password": PASSWORD, "csrfmiddlewaretoken": token, "next": "/admin/"},
        secure=True,
        HTTP_REFERER="https://testserver/admin/login/",
    )

    assert response.status_code == 302
    assert form.cookies["csrftoken"]["secure"] is True
    assert response.cookies["sessionid"]["secure"] is True
    assert response.cookies["sessionid"]["httponly"] is True


def test_over_https_a_cross_site_post_is_refused_even_with_a_valid_token():
    staff = UserFactory(is_staff=True)
    client = Client(enforce_csrf_checks=True)
    token = client.get(LOGIN, secure=True).cookies["csrftoken"].value

    response = client.post(
        LOGIN,
        {"username": staff.email, "password": PASSWORD, "csrfmiddlewaretoken": token, "next": "/admin/"},
        secure=True,
        HTTP_ORIGIN="https://evil.example.com",
    )

    assert response.status_code == 403
    assert "sessionid" not in response.cookies


def test_admin_logout_needs_a_post_with_the_csrf_token():
    staff = UserFactory(is_staff=True)
    client = Client(enforce_csrf_checks=True)
    admin_login(client, staff)

    by_link = client.get("/admin/logout/")
    forged = client.post("/admin/logout/")

    assert by_link.status_code == 405
    assert forged.status_code == 403
    assert client.get("/admin/").status_code == 200  # still signed in


def _settings_under(env: dict[str, str]) -> dict:
    """Security settings as a fresh process computes them from `env` (the real wiring, not overrides)."""
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({k: getattr(s, k) for k in ('SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
        "'SESSION_COOKIE_HTTPONLY', 'SESSION_COOKIE_SAMESITE', 'CSRF_COOKIE_SAMESITE', 'MIDDLEWARE')}))"
    )
    environ = {**server_env(**env), "DJANGO_SETTINGS_MODULE": "flashsale.settings"}
    environ.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("https, secure", [("true", True), ("false", False), ("", False)])
def test_the_https_variable_decides_the_secure_flag_of_both_cookies(https, secure):
    computed = _settings_under({"HTTPS": https})

    assert (computed["SESSION_COOKIE_SECURE"], computed["CSRF_COOKIE_SECURE"]) == (secure, secure)
    assert computed["SESSION_COOKIE_HTTPONLY"] is True
    assert computed["SESSION_COOKIE_SAMESITE"] == computed["CSRF_COOKIE_SAMESITE"] == "Lax"
    assert "django.middleware.csrf.CsrfViewMiddleware" in computed["MIDDLEWARE"]


def _set_cookies(response: httpx.Response) -> dict[str, SimpleCookie]:
    jar = {}
    for header in response.headers.get_list("set-cookie"):
        cookie = SimpleCookie()
        cookie.load(header)
        jar.update({name: morsel for name, morsel in cookie.items()})
    return jar


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("https", ["true", "false"])
def test_a_live_server_sets_the_cookie_flags_the_https_variable_asks_for(https):
    staff = UserFactory(is_staff=True)

    with daphne_server(HTTPS=https) as base_url:
        with httpx.Client(base_url=base_url, timeout=10) as browser:
            form = browser.get(LOGIN)
            csrf = _set_cookies(form)["csrftoken"]
            # Sent back by hand: an http:// client would withhold a Secure cookie.
            response = browser.post(
                LOGIN,
                data={
                    "username": staff.email,
                    "password": PASSWORD,
                    "csrfmiddlewaretoken": csrf.value,
                    "next": "/admin/",
                },
                headers={"Cookie": f"csrftoken={csrf.value}"},
            )

    assert response.status_code == 302, response.text[:300]
    session = _set_cookies(response)["sessionid"]
    assert session["httponly"] is True
    assert session["samesite"] == "Lax"
    assert bool(session["secure"]) is (https == "true")
    assert bool(csrf["secure"]) is (https == "true")
    assert csrf["samesite"] == "Lax"


def test_an_admin_session_does_not_authenticate_the_api():
    """The API takes tokens only, so a cross-site request riding a staff session cookie gets nothing."""
    staff = UserFactory(is_staff=True)
    sale = SaleFactory(original_stock=10)
    client = Client()
    admin_login(client, staff)

    create = client.post(
        "/api/v1/flashsales",
        {"name": "Forged", "startTime": "2030-01-01T00:00:00Z", "endTime": "2030-01-02T00:00:00Z"},
        content_type="application/json",
    )
    end = client.post(f"/api/v1/flashsales/{sale.pk}/end")
    buy = client.post(
        "/api/v1/flashsales/purchase", {"saleId": sale.pk, "quantity": 1}, content_type="application/json"
    )

    for response in (create, end, buy):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"
    assert FlashSale.objects.count() == 1
    sale.refresh_from_db()
    assert (sale.current_stock, sale.version) == (10, 1)
    assert not Purchase.objects.exists()


def test_the_live_page_sets_no_cookies_and_keeps_its_token_out_of_cookies(client):
    SaleFactory()

    page = client.get("/")

    assert page.status_code == 200
    assert not page.cookies  # nothing a cross-site request could ride on
    assert page["X-Frame-Options"] == "DENY"
