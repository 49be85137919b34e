"""Every error status the API can answer, each in the one JSON error shape, and nothing written.

The walk below triggers each status of README's error table through a real request; a status the API
gains or loses must be added here and there. Also: a Host outside ALLOWED_HOSTS under /api/ (JSON in
DEBUG and without it, HTML kept for pages), the probes' methods, and the reason phrases Daphne sends.
"""

import json
import re
from http import HTTPStatus
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import OperationalError
from django.http import Http404
from django.test import Client
from django.urls import path
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.permissions import AllowAny
from rest_framework.test import APIClient
from rest_framework.views import APIView

from core.error_codes import ErrorCode
from harness.servers import daphne_server
from idempotency.models import IdempotencyKey
from sales import purchase
from sales.exceptions import SalesError
from sales.models import FlashSale, Purchase
from tests.error_shape import assert_error_shape
from tests.factories import SaleFactory, TokenFactory, UserFactory
from tests.test_stalled_bodies import StalledBody

PURCHASE = "/api/v1/flashsales/purchase"
README = Path(__file__).resolve().parent.parent / "README.md"


def everything_stored() -> dict:
    return {
        "sales": list(
            FlashSale.objects.order_by("pk").values_list("pk", "name", "current_stock", "original_stock", "version")
        ),
        "purchases": list(Purchase.objects.order_by("pk").values_list("pk", "quantity")),
        "users": list(get_user_model().objects.order_by("pk").values_list("pk", "email", "is_staff")),
        "idempotency_keys": list(IdempotencyKey.objects.order_by("pk").values_list("pk", "status_code")),
    }


# Each case prepares what it needs and returns the request that fails; the walk checks the answer and
# that the failing request stored nothing.


def bad_body(w):
    return lambda: w.buyer_api.post(PURCHASE, {"saleId": w.sale.pk, "quantity": 0}, format="json")


def bad_host(w):
    w.settings.ALLOWED_HOSTS = ["shop.example"]
    return lambda: w.buyer_api.post(
        PURCHASE, {"saleId": w.sale.pk, "quantity": 1}, format="json", HTTP_HOST="localhost"
    )


def no_token(w):
    return lambda: w.api.post(PURCHASE, {"saleId": w.sale.pk, "quantity": 1}, format="json")


def unknown_token(w):
    w.api.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    return lambda: w.api.post(PURCHASE, {"saleId": w.sale.pk, "quantity": 1}, format="json")


def wrong_password(w):
    user = UserFactory()
    return lambda: w.api.post(
        "/api/v1/auth/login", {"email": user.email, "password": "not-the-password"}, format="json"
    )


def buyer_on_a_staff_endpoint(w):
    return lambda: w.buyer_api.post(f"/api/v1/flashsales/{w.sale.pk}/add-units", {"units": 5}, format="json")


def unknown_path(w):
    return lambda: w.api.get("/api/v1/nope")


def unknown_sale(w):
    return lambda: w.api.get("/api/v1/leaderboard", {"saleId": w.sale.pk + 1000})


def wrong_method(w):
    return lambda: w.buyer_api.get(PURCHASE)


def wrong_method_on_a_probe(w):
    return lambda: w.api.post("/api/v1/health")


def sold_out(w):
    sold_out_sale = SaleFactory(original_stock=3, current_stock=0)
    return lambda: w.buyer_api.post(PURCHASE, {"saleId": sold_out_sale.pk, "quantity": 1}, format="json")


def email_taken(w):
    user = UserFactory()
    body = {"name": "Again", "email": user.email.upper(), "password": "correct-horse-battery"}
    return lambda: w.api.post("/api/v1/auth/register", body, format="json")


def body_over_a_mebibyte(w):
    body = json.dumps({"saleId": w.sale.pk, "quantity": 1, "pad": "x" * (1024 * 1024 + 10)})
    return lambda: w.buyer_api.generic("POST", PURCHASE, body, content_type="application/json")


def form_encoded_body(w):
    return lambda: w.buyer_api.post(PURCHASE, {"saleId": w.sale.pk, "quantity": 1})


def idempotency_key_reused(w):
    first = w.buyer_api.post(
        PURCHASE, {"saleId": w.sale.pk, "quantity": 1}, format="json", HTTP_IDEMPOTENCY_KEY="order-1"
    )
    assert first.status_code == 201
    return lambda: w.buyer_api.post(
        PURCHASE, {"saleId": w.sale.pk, "quantity": 2}, format="json", HTTP_IDEMPOTENCY_KEY="order-1"
    )


def stalled_body(w):
    body = json.dumps({"email": "ada@example.com", "password": "a long enough password"})
    return lambda: w.api.generic(
        "POST", "/api/v1/auth/login", body, content_type="application/json", **{"wsgi.input": StalledBody()}
    )


def over_the_global_limit(w):
    w.settings.RATELIMIT_GLOBAL = "1/d"
    assert w.api.get("/api/v1/leaderboard").status_code == 200
    return lambda: w.api.get("/api/v1/leaderboard")


def a_bug(w):
    def explode(**kwargs):
        raise RuntimeError("secret internals")

    w.monkeypatch.setattr(purchase, "purchase", explode)
    return lambda: w.quiet_buyer_api.post(PURCHASE, {"saleId": w.sale.pk, "quantity": 1}, format="json")


def database_unreachable(w):
    def unreachable(**kwargs):
        raise OperationalError("connection refused")

    w.monkeypatch.setattr(purchase, "purchase", unreachable)
    return lambda: w.quiet_buyer_api.post(PURCHASE, {"saleId": w.sale.pk, "quantity": 1}, format="json")


WALK = [
    (400, "validation_error", bad_body),
    (400, "bad_request", bad_host),
    (401, "not_authenticated", no_token),
    (401, "authentication_failed", unknown_token),
    (401, "invalid_credentials", wrong_password),
    (403, "permission_denied", buyer_on_a_staff_endpoint),
    (404, "not_found", unknown_path),
    (404, "sale_not_found", unknown_sale),
    (405, "method_not_allowed", wrong_method),
    (405, "method_not_allowed", wrong_method_on_a_probe),
    (409, "sold_out", sold_out),
    (409, "email_taken", email_taken),
    (408, "request_timeout", stalled_body),
    (413, "payload_too_large", body_over_a_mebibyte),
    (415, "unsupported_media_type", form_encoded_body),
    (422, "idempotency_key_reused", idempotency_key_reused),
    (429, "rate_limited", over_the_global_limit),
    (500, "internal_error", a_bug),
    (503, "service_unavailable", database_unreachable),
]


@pytest.mark.django_db
@pytest.mark.parametrize("status, code, case", WALK, ids=[case.__name__ for _, _, case in WALK])
def test_every_error_status_is_the_json_error_shape_and_stores_nothing(status, code, case, settings, monkeypatch):
    token = TokenFactory(user=UserFactory())
    buyer_api = APIClient()
    quiet_buyer_api = APIClient(raise_request_exception=False)  # a 500 is answered, not re-raised
    for client in (buyer_api, quiet_buyer_api):
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    walk = SimpleNamespace(
        api=APIClient(),
        buyer_api=buyer_api,
        quiet_buyer_api=quiet_buyer_api,
        sale=SaleFactory(original_stock=10),
        settings=settings,
        monkeypatch=monkeypatch,
    )
    send = case(walk)
    before = everything_stored()

    response = send()

    body = assert_error_shape(response, status, code)
    assert "Traceback" not in response.content.decode() and "secret internals" not in body["error"]["message"]
    assert everything_stored() == before


def readme_error_section() -> str:
    return README.read_text().split("### Error codes", 1)[1].split("\n### ", 1)[0]


def readme_error_table() -> set[tuple[int, str]]:
    """(status, code) of each row of README's error table."""
    table = readme_error_section().split("\n\n", 2)[1]
    return {(int(status), code) for status, code in re.findall(r"^\| (\d{3}) \| `(\w+)` \|", table, re.M)}


def test_the_walk_covers_every_status_of_the_readme_error_table():
    documented = readme_error_table()
    walked = {(status, code) for status, code, _ in WALK}

    assert {status for status, _ in documented} == {status for status, _ in walked}
    assert {status for status, _ in walked} == {400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429, 500, 503}
    assert walked <= documented, walked - documented


def test_the_readme_documents_every_registered_error_code_under_its_status():
    registered = {(code.status, code.value) for code in ErrorCode}

    # 406 is told below the table, which holds the statuses the walk above reaches.
    assert readme_error_table() | {(406, "not_acceptable")} == registered
    assert "`406 not_acceptable`" in readme_error_section()


@pytest.mark.django_db
def test_an_accept_header_that_rules_out_json_is_406_not_acceptable(api):
    response = api.get("/api/v1/leaderboard", HTTP_ACCEPT="application/xml")

    assert_error_shape(response, 406, "not_acceptable")


# --- the exception handler: DRF's handler answers, the body is reshaped ---------------------------


RAISED = {
    "throttled": lambda: Throttled(wait=2.5),
    "http404": lambda: Http404(),
    "django_permission_denied": lambda: PermissionDenied(),
    "unregistered_code": lambda: NotFound("Gone.", code="gone_fishing"),
    "service_error_base": lambda: SalesError(),
}


class Raises(APIView):
    """An API view that raises what its path names, as views and the services they call do."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request, case):
        raise RAISED[case]()


urlpatterns = [path("api/v1/raises/<str:case>", Raises.as_view())]


@pytest.mark.urls(__name__)
def test_a_drf_throttle_answers_like_every_other_429(api):
    response = api.get("/api/v1/raises/throttled")

    body = assert_error_shape(response, 429, "rate_limited")
    assert response["Retry-After"] == "3"
    assert body["error"]["details"] == {"retryAfter": 3}


@pytest.mark.urls(__name__)
def test_django_404_and_permission_denied_in_a_view_are_answered_by_drf_in_the_error_shape(api):
    assert_error_shape(api.get("/api/v1/raises/http404"), 404, "not_found")
    assert_error_shape(api.get("/api/v1/raises/django_permission_denied"), 403, "permission_denied")


@pytest.mark.urls(__name__)
def test_a_drf_error_raised_with_an_unregistered_code_is_a_logged_internal_error(api, caplog):
    response = api.get("/api/v1/raises/unregistered_code")

    body = assert_error_shape(response, 500, "internal_error")
    assert body["error"]["message"] == ErrorCode.INTERNAL_ERROR.message
    assert "unregistered error code 'gone_fishing'" in caplog.text


@pytest.mark.urls(__name__)
def test_a_service_error_raised_from_a_base_class_is_a_bug_and_answers_as_one(api):
    assert_error_shape(api.get("/api/v1/raises/service_error_base"), 500, "internal_error")


# --- a Host outside ALLOWED_HOSTS -------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
def test_a_host_outside_allowed_hosts_is_a_json_400_under_api_and_html_for_pages(settings, debug):
    settings.DEBUG = debug
    settings.ALLOWED_HOSTS = ["shop.example"]  # the README's production example
    client = Client()

    health = client.get("/api/v1/health", HTTP_HOST="localhost")
    schema = client.get("/api/schema/", HTTP_HOST="localhost")
    page = client.get("/", HTTP_HOST="localhost")
    served = client.get("/api/v1/health", HTTP_HOST="shop.example")

    body = assert_error_shape(health, 400, "bad_request")
    assert body["error"]["details"] == {}
    assert "localhost" not in health.content.decode()
    assert_error_shape(schema, 400, "bad_request")
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")
    assert served.status_code == 200


@pytest.mark.django_db
def test_other_bad_requests_outside_drf_are_json_under_api_without_debug(settings, rf):
    from django.core.exceptions import SuspiciousOperation

    from core.views import bad_request

    settings.DEBUG = False

    api = bad_request(rf.get("/api/v1/health"), SuspiciousOperation("bad"))
    page = bad_request(rf.get("/"), SuspiciousOperation("bad"))

    assert api.status_code == 400 and json.loads(api.content)["error"]["code"] == "bad_request"
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")


# --- through Daphne -----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the server process reads what the test committed
def test_through_daphne_422_and_429_carry_their_reason_phrases_and_a_bad_host_is_json():
    sale = SaleFactory(original_stock=10)
    token = TokenFactory(user=UserFactory())
    headers = {"Authorization": f"Token {token.key}", "Idempotency-Key": "order-1"}

    with daphne_server(RATELIMIT_ENABLE="true", RATELIMIT_GLOBAL="2/d") as server:
        bought = httpx.post(f"{server}{PURCHASE}", json={"saleId": sale.pk, "quantity": 1}, headers=headers, timeout=10)
        reused = httpx.post(f"{server}{PURCHASE}", json={"saleId": sale.pk, "quantity": 2}, headers=headers, timeout=10)
        limited = httpx.get(f"{server}/api/v1/leaderboard", timeout=10)
        bad_host = httpx.get(f"{server}/api/v1/health", headers={"Host": "shop.example"}, timeout=10)

    assert (bought.status_code, bought.reason_phrase) == (201, "Created")
    assert (reused.status_code, reused.reason_phrase) == (422, HTTPStatus(422).phrase)
    assert (limited.status_code, limited.reason_phrase) == (429, "Too Many Requests")
    assert limited.json()["error"]["code"] == "rate_limited"
    assert (bad_host.status_code, bad_host.reason_phrase) == (400, "Bad Request")
    assert bad_host.json()["error"]["code"] == "bad_request"
    assert list(Purchase.objects.values_list("sale_id", "quantity")) == [(sale.pk, 1)]
