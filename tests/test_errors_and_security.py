import json
import logging

import pytest
from django.test import Client, RequestFactory, override_settings
from rest_framework.authtoken.models import Token

from core.ratelimit import client_ip
from sales.models import Purchase
from tests.error_shape import assert_error_shape
from tests.factories import SaleFactory

pytestmark = pytest.mark.django_db

PURCHASE = "/api/v1/flashsales/purchase"


@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_unknown_api_routes_are_404_in_the_error_shape(api, method):
    assert_error_shape(getattr(api, method)("/api/v1/nope"), 404, "not_found")
    assert_error_shape(getattr(api, method)("/api/v2/flashsales/active"), 404, "not_found")


def test_wrong_method_is_405_in_the_error_shape(buyer_api):
    assert_error_shape(buyer_api.get(PURCHASE), 405, "method_not_allowed")


def test_form_encoded_body_is_415_and_writes_nothing(buyer_api):
    sale = SaleFactory()

    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1})  # multipart, not JSON

    assert_error_shape(response, 415, "unsupported_media_type")
    assert Purchase.objects.count() == 0


def test_a_body_over_one_mebibyte_is_413_and_writes_nothing(buyer_api):
    sale = SaleFactory()
    body = json.dumps({"saleId": sale.pk, "quantity": 1, "pad": "x" * (1024 * 1024 + 10)})

    response = buyer_api.generic("POST", PURCHASE, body, content_type="application/json")

    assert_error_shape(response, 413, "payload_too_large")
    assert Purchase.objects.count() == 0
    sale.refresh_from_db()
    assert (sale.current_stock, sale.version) == (sale.original_stock, 1)


@override_settings(DEBUG=False)
def test_an_unexpected_error_is_a_500_without_a_traceback(buyer_api, monkeypatch):
    from sales import purchase

    def explode(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(purchase, "purchase", explode)
    sale = SaleFactory()

    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")

    body = assert_error_shape(response, 500, "internal_error")
    assert "secret internals" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert body["error"]["details"] == {}


def test_purchases_are_rate_limited_per_user_with_retry_after(buyer_api, settings):
    settings.RATELIMIT_PURCHASE = "2/d"
    sale = SaleFactory()

    statuses = [
        buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json").status_code for _ in range(3)
    ]
    limited = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")

    assert statuses == [201, 201, 429]
    body = assert_error_shape(limited, 429, "rate_limited")
    assert 1 <= int(limited["Retry-After"]) <= 24 * 3600
    assert body["error"]["details"]["retryAfter"] == int(limited["Retry-After"])
    assert Purchase.objects.count() == 2


def test_login_is_rate_limited_per_ip(api, settings):
    settings.RATELIMIT_LOGIN = "3/d"
    for _ in range(3):
        api.post("/api/v1/auth/login", {"email": "a@example.com", "password": "whatever1"}, format="json")

    response = api.post("/api/v1/auth/login", {"email": "b@example.com", "password": "whatever1"}, format="json")

    assert_error_shape(response, 429, "rate_limited")
    assert response.has_header("Retry-After")


def test_login_failures_are_limited_per_email_across_addresses_for_addresses_that_failed(api, settings):
    settings.RATELIMIT_LOGIN_EMAIL = "2/d"
    for address in ("10.0.0.1", "10.0.0.2"):
        api.post("/api/v1/auth/login", {"email": "a@example.com", "password": "x"}, format="json", REMOTE_ADDR=address)

    response = api.post(
        "/api/v1/auth/login", {"email": "A@example.com", "password": "x"}, format="json", REMOTE_ADDR="10.0.0.1"
    )

    assert_error_shape(response, 429, "rate_limited")


def test_register_is_rate_limited_per_ip(api, settings):
    settings.RATELIMIT_REGISTER = "1/d"
    api.post("/api/v1/auth/register", {"name": "A", "email": "a@example.com", "password": "x"}, format="json")

    response = api.post(
        "/api/v1/auth/register", {"name": "B", "email": "b@example.com", "password": "x"}, format="json"
    )

    assert_error_shape(response, 429, "rate_limited")


def test_the_global_per_ip_ceiling_applies_to_every_api_route(api, settings):
    settings.RATELIMIT_GLOBAL = "2/d"
    api.get("/api/v1/leaderboard")
    api.get("/api/v1/leaderboard")

    response = api.get("/api/v1/leaderboard")
    other_client = api.get("/api/v1/leaderboard", REMOTE_ADDR="10.9.9.9")

    assert_error_shape(response, 429, "rate_limited")
    assert other_client.status_code == 200
    assert api.get("/api/v1/health").status_code == 200  # probes are never limited


def test_the_client_address_comes_from_the_trusted_proxy_header_when_configured(api, settings):
    settings.RATELIMIT_GLOBAL = "1/d"
    settings.TRUSTED_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"

    first = api.get("/api/v1/leaderboard", HTTP_X_FORWARDED_FOR="spoofed, 203.0.113.7")
    second = api.get("/api/v1/leaderboard", HTTP_X_FORWARDED_FOR="203.0.113.8")
    again = api.get("/api/v1/leaderboard", HTTP_X_FORWARDED_FOR="other-spoof, 203.0.113.7")

    assert (first.status_code, second.status_code, again.status_code) == (200, 200, 429)


@pytest.mark.parametrize("forwarded", ["zzz", "203.0.113.7, zzz", "", "1.2.3.4:80", "::1%zz"])
def test_a_trusted_proxy_header_that_is_not_an_address_counts_against_the_socket_peer(api, settings, forwarded):
    settings.RATELIMIT_GLOBAL = "2/d"
    settings.TRUSTED_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"

    first = api.get("/api/v1/leaderboard", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR="10.0.0.9")
    login = api.post(
        "/api/v1/auth/login",
        {"email": "a@example.com", "password": "x"},
        format="json",
        HTTP_X_FORWARDED_FOR=forwarded,
        REMOTE_ADDR="10.0.0.9",
    )
    same_peer = api.get("/api/v1/leaderboard", REMOTE_ADDR="10.0.0.9")

    assert first.status_code == 200
    assert_error_shape(login, 401, "invalid_credentials")
    assert_error_shape(same_peer, 429, "rate_limited")


def test_logins_from_a_peer_that_is_not_a_trusted_proxy_are_limited_by_its_address_whatever_it_forwards(api, settings):
    # Straight to gunicorn with a new X-Forwarded-For per request: each was counted as a new client.
    # An hour's window: a minute's could turn over between the requests and let the fourth through.
    settings.RATELIMIT_LOGIN = "3/h"
    settings.TRUSTED_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    settings.TRUSTED_PROXIES = ["127.0.0.1", "::1"]
    body = {"email": "nobody@example.com", "password": "wrong-password-1"}

    statuses = [
        api.post(
            "/api/v1/auth/login",
            body,
            format="json",
            REMOTE_ADDR="203.0.113.60",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        ).status_code
        for n in range(4)
    ]
    through_proxy = api.post(
        "/api/v1/auth/login", body, format="json", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.200"
    )

    assert statuses == [401, 401, 401, 429]
    assert through_proxy.status_code == 401
    assert not Token.objects.exists()


@pytest.mark.parametrize(
    ("forwarded", "counted_as"),
    [
        # A TLS proxy on this host in front of HAProxy: both hops are ours, the client is left of them.
        ("203.0.113.7, 127.0.0.1", "203.0.113.7"),
        # What the client wrote on the left is not believed: the right-most untrusted entry is.
        ("10.0.0.1, 203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_the_client_is_the_right_most_forwarded_address_that_is_not_a_trusted_proxy(settings, forwarded, counted_as):
    settings.TRUSTED_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    settings.TRUSTED_PROXIES = ["127.0.0.1", "::1"]
    request = RequestFactory().get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)

    assert client_ip(request) == counted_as


def test_trusted_proxies_may_name_networks(settings):
    settings.TRUSTED_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    settings.TRUSTED_PROXIES = ["10.213.47.0/24"]

    from_proxy = RequestFactory().get("/", REMOTE_ADDR="10.213.47.20", HTTP_X_FORWARDED_FOR="203.0.113.7")
    from_loopback = RequestFactory().get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7")

    assert (client_ip(from_proxy), client_ip(from_loopback)) == ("203.0.113.7", "127.0.0.1")


def test_rate_limiting_can_be_switched_off(buyer_api, settings):
    settings.RATELIMIT_ENABLE = False
    settings.RATELIMIT_GLOBAL = "1/d"

    assert [buyer_api.get("/api/v1/leaderboard").status_code for _ in range(3)] == [200, 200, 200]


def test_security_headers_are_set(api):
    response = api.get("/api/v1/leaderboard")

    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


@override_settings(SECURE_HSTS_SECONDS=3600)
def test_hsts_is_sent_over_https_when_configured():
    response = Client().get("/api/v1/health", secure=True)

    assert response["Strict-Transport-Security"].startswith("max-age=3600")


@override_settings(CORS_ALLOWED_ORIGINS=["https://shop.example.com"])
def test_cors_allows_only_configured_origins(api):
    allowed = api.get("/api/v1/leaderboard", HTTP_ORIGIN="https://shop.example.com")
    refused = api.get("/api/v1/leaderboard", HTTP_ORIGIN="https://evil.example.com")

    assert allowed["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "Access-Control-Allow-Origin" not in refused


@override_settings(CORS_ALLOWED_ORIGINS=["https://shop.example.com"])
def test_an_api_request_without_origin_gets_no_cors_header_but_varies_on_origin(api):
    response = api.get("/api/v1/leaderboard")

    assert response.status_code == 200
    assert not any(name.lower().startswith("access-control-") for name in response.headers)
    assert "origin" in response["Vary"].lower()  # a cache must not serve it to a cross-origin page


def test_every_request_is_logged_as_one_structured_line(buyer_api, buyer, caplog):
    with caplog.at_level(logging.INFO, logger="flashsale.request"):
        buyer_api.get("/api/v1/flashsales/active")

    [record] = [r for r in caplog.records if r.name == "flashsale.request"]
    assert (record.method, record.path, record.status, record.user_id) == (
        "GET",
        "/api/v1/flashsales/active",
        404,
        buyer.pk,
    )
    assert record.code == "no_active_sale"  # the outcome, as the error was raised
    assert record.duration_ms >= 0


def test_json_formatter_writes_one_parsable_line():
    from core.logging import JsonFormatter

    record = logging.makeLogRecord({"name": "flashsale.request", "msg": "request", "levelname": "INFO", "status": 201})

    line = JsonFormatter().format(record)

    assert "\n" not in line
    assert json.loads(line)["status"] == 201
