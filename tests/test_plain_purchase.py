"""A plain purchase (a cached token, a plainly valid JSON body, no Idempotency-Key) is answered
before DRF (sales.fastpath) with exactly the answer DRF's view gives: status, every header, the
body's bytes and the recorded error code, for a purchase and for every refusal. Everything else
reaches DRF's view, which stays the contract."""

import contextlib
import json
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone

from accounts.authentication import token_cache_key
from accounts.models import User
from core.errors import error_code_of
from sales import purchase
from sales.api import PurchaseView
from sales.fastpath import PlainPurchaseMiddleware
from sales.models import FlashSale, Purchase, QueuePlace
from tests.factories import PurchaseFactory, SaleFactory

pytestmark = pytest.mark.django_db

PURCHASE = "/api/v1/flashsales/purchase"


@contextlib.contextmanager
def through_drf():
    """The fast path steps aside: the request reaches DRF's view."""
    with mock.patch.object(PlainPurchaseMiddleware, "_answer", return_value=None):
        yield


@contextlib.contextmanager
def never_reaching_drf():
    with mock.patch.object(PurchaseView, "dispatch", side_effect=AssertionError("reached DRF")):
        yield


def received(response) -> tuple:
    """Everything a client receives (headers in their order), and the code the metrics and the request log record."""
    return response.status_code, list(response.items()), response.content, error_code_of(response)


def post(client, body, *, path=PURCHASE, content_type="application/json", **headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.generic("POST", path, data, content_type=content_type, **headers)


@pytest.fixture
def known_buyer(buyer_api):
    """The buyer's token is cached, as for every request after a token's first."""
    assert buyer_api.get("/api/v1/flashsales").status_code == 200
    return buyer_api


@pytest.mark.parametrize(
    "variant",
    ["plain", "trailing-slash", "extra-field", "charset", "accept-any", "accept-json", "held"],
)
def test_a_purchase_never_reaches_drf_and_answers_byte_for_byte_as_drf(known_buyer, buyer, variant):
    sale = SaleFactory(original_stock=10, hold_seconds=600 if variant == "held" else 0)
    body = {"saleId": sale.pk, "quantity": 1, **({"note": "gift"} if variant == "extra-field" else {})}
    request = {
        "path": PURCHASE + "/" if variant == "trailing-slash" else PURCHASE,
        "content_type": "application/json; charset=utf-8" if variant == "charset" else "application/json",
        **({"HTTP_ACCEPT": "*/*"} if variant == "accept-any" else {}),
        **({"HTTP_ACCEPT": "application/json"} if variant == "accept-json" else {}),
    }
    made = []

    def recorded(**order):
        made.append(seam(**order))
        return made[-1]

    seam = purchase.purchase
    with mock.patch.object(purchase, "purchase", side_effect=recorded), never_reaching_drf():
        fast = post(known_buyer, body, **request)
    # DRF's view renders the same committed purchase (its seam answers with it, buying nothing).
    with mock.patch.object(purchase, "purchase", return_value=made[0]), through_drf():
        drf = post(known_buyer, body, **request)

    assert fast.status_code == 201
    assert received(fast) == received(drf)
    assert fast.json()["data"]["status"] == ("held" if variant == "held" else "confirmed")
    assert Purchase.objects.filter(user=buyer, sale=sale).count() == 1
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 9


def test_a_token_whose_cache_entry_expired_is_read_from_the_database_and_the_purchase_never_reaches_drf(
    known_buyer, buyer
):
    # A herd's first request of each buyer: the entry their last request cached has expired.
    key = known_buyer._credentials["HTTP_AUTHORIZATION"].split()[1]
    sale = SaleFactory(original_stock=10)
    body = {"saleId": sale.pk, "quantity": 1}
    made = []

    def recorded(**order):
        made.append(seam(**order))
        return made[-1]

    seam = purchase.purchase
    cache.delete(token_cache_key(key))
    with mock.patch.object(purchase, "purchase", side_effect=recorded), never_reaching_drf():
        fast = post(known_buyer, body)
    assert cache.get(token_cache_key(key)) is not None  # cached again, for the buyer's next request
    cache.delete(token_cache_key(key))
    with mock.patch.object(purchase, "purchase", return_value=made[0]), through_drf():
        drf = post(known_buyer, body)

    assert fast.status_code == 201
    assert received(fast) == received(drf)
    assert Purchase.objects.filter(user=buyer, sale=sale).count() == 1


def _sold_out(buyer):
    return SaleFactory(original_stock=3, current_stock=0), 1


def _before_start(buyer):
    return SaleFactory(start_time=timezone.now() + timedelta(hours=1)), 1


def _after_end(buyer):
    start = timezone.now() - timedelta(hours=2)
    return SaleFactory(start_time=start, end_time=start + timedelta(hours=1)), 1


def _paused(buyer):
    return SaleFactory(paused=True), 1


def _insufficient_stock(buyer):
    return SaleFactory(original_stock=3, current_stock=1), 2


def _over_the_sales_purchase_limit(buyer):
    return SaleFactory(max_per_purchase=1), 2


def _buyer_limit_reached(buyer):
    sale = SaleFactory(original_stock=3, current_stock=2, max_per_buyer=1)
    PurchaseFactory(user=buyer, sale=sale)
    return sale, 1


def _unknown_sale(buyer):
    return mock.Mock(pk=2_000_000_000), 1


def _not_admitted(buyer):
    return SaleFactory(waiting_room=True), 1


def _admission_expired(buyer):
    sale = SaleFactory(waiting_room=True, admitted_through=1)
    QueuePlace.objects.create(sale=sale, user=buyer, position=1, admitted_until=timezone.now() - timedelta(seconds=1))
    return sale, 1


REFUSALS = {
    "sold_out": _sold_out,
    "sale_not_active before the start": _before_start,
    "sale_not_active after the end": _after_end,
    "sale_paused": _paused,
    "insufficient_stock": _insufficient_stock,
    "validation_error over the sale's maxPerPurchase": _over_the_sales_purchase_limit,
    "user_limit_reached": _buyer_limit_reached,
    "sale_not_found": _unknown_sale,
    "not_admitted": _not_admitted,
    "admission_expired": _admission_expired,
}


@pytest.mark.parametrize("refusal", REFUSALS)
def test_every_refusal_never_reaches_drf_and_answers_byte_for_byte_as_drf(known_buyer, buyer, refusal):
    sale, quantity = REFUSALS[refusal](buyer)
    before = list(FlashSale.objects.values_list("pk", "current_stock", "stock_version"))
    body = {"saleId": sale.pk, "quantity": quantity}

    with never_reaching_drf():
        fast = post(known_buyer, body)
        # A refusal the database gave may be remembered by the gate: the fast path answers it too.
        again = post(known_buyer, body)
    with through_drf():
        drf = post(known_buyer, body)

    assert fast.json()["error"]["code"] == refusal.split()[0]
    assert received(fast) == received(again) == received(drf)
    assert list(FlashSale.objects.values_list("pk", "current_stock", "stock_version")) == before
    assert Purchase.objects.filter(user=buyer).count() == (1 if refusal == "user_limit_reached" else 0)


@override_settings(RATELIMIT_ENABLE=True, RATELIMIT_PURCHASE="1/d")
def test_the_purchase_limit_answers_byte_for_byte_as_drf(known_buyer, buyer):
    sale = SaleFactory(original_stock=10)
    body = {"saleId": sale.pk, "quantity": 1}
    frozen = time.time()  # Retry-After counts whole seconds to the window's end
    with mock.patch("time.time", return_value=frozen):
        with never_reaching_drf():
            bought = post(known_buyer, body)
            fast = post(known_buyer, body)
        with through_drf():
            drf = post(known_buyer, body)

    assert (bought.status_code, fast.status_code) == (201, 429)
    assert received(fast) == received(drf)
    assert Purchase.objects.filter(user=buyer).count() == 1


def test_a_database_outage_answers_byte_for_byte_as_drf(known_buyer):
    sale = SaleFactory(original_stock=10)
    body = {"saleId": sale.pk, "quantity": 1}
    with mock.patch.object(purchase, "_take", side_effect=OperationalError("server closed the connection")):
        with never_reaching_drf():
            fast = post(known_buyer, body)
        with through_drf():
            drf = post(known_buyer, body)

    assert (fast.status_code, fast.json()["error"]["code"]) == (503, "service_unavailable")
    assert received(fast) == received(drf)


@pytest.mark.parametrize(
    "variant",
    [
        "not-json",
        "wrong-types",
        "missing-field",
        "a-list",
        "nan",
        "utf-8-bom",
        "utf-16",
        "latin-1-charset",
        "huge",
        "form-encoded",
        "no-token",
        "unknown-token",
        "inactive-user-not-cached",
        "idempotency-key",
        "accept-with-indent",
        "accept-html",
        "query-string",
        "GET",
        "HEAD",
        "OPTIONS",
        "PUT",
    ],
)
def test_requests_the_fast_path_is_not_sure_of_reach_drf(known_buyer, api, variant):
    sale = SaleFactory(original_stock=10)
    plain = json.dumps({"saleId": sale.pk, "quantity": 1})
    client, method, data, extra = known_buyer, "POST", plain, {}
    content_type = "application/json"
    if variant == "not-json":
        data = "{nope"
    elif variant == "wrong-types":
        data = json.dumps({"saleId": str(sale.pk), "quantity": 1})
    elif variant == "missing-field":
        data = json.dumps({"saleId": sale.pk})
    elif variant == "a-list":
        data = json.dumps([sale.pk, 1])
    elif variant == "nan":
        data = plain[:-1] + ', "note": NaN}'
    elif variant == "utf-8-bom":
        data = "\ufeff" + plain
    elif variant == "utf-16":
        data = plain.encode("utf-16")
    elif variant == "latin-1-charset":
        content_type = "application/json; charset=latin-1"
    elif variant == "huge":
        data = json.dumps({"saleId": sale.pk, "quantity": 1, "note": "x" * 2000})
    elif variant == "form-encoded":
        data, content_type = f"saleId={sale.pk}&quantity=1", "application/x-www-form-urlencoded"
    elif variant == "no-token":
        client = api
    elif variant == "unknown-token":
        api.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
        client = api
    elif variant == "inactive-user-not-cached":
        key = known_buyer._credentials["HTTP_AUTHORIZATION"].split()[1]
        User.objects.filter(auth_token__key=key).update(is_active=False)  # no signal: the entry stays
        cache.delete(token_cache_key(key))  # ... until it expires
    elif variant == "idempotency-key":
        extra = {"HTTP_IDEMPOTENCY_KEY": "k-1"}
    elif variant == "accept-with-indent":
        extra = {"HTTP_ACCEPT": "application/json; indent=4"}
    elif variant == "accept-html":
        extra = {"HTTP_ACCEPT": "text/html"}
    elif variant == "query-string":
        method, data = "POST", plain
    elif variant in {"GET", "HEAD", "OPTIONS", "PUT"}:
        method = variant
    path = PURCHASE + ("?format=json" if variant == "query-string" else "")

    with mock.patch.object(PurchaseView, "dispatch", autospec=True, side_effect=PurchaseView.dispatch) as dispatch:
        response = client.generic(method, path, data, content_type=content_type, **extra)

    assert dispatch.called, response.content
    if variant == "accept-with-indent":
        assert response.status_code == 201 and response.content.startswith(b'{\n    "success"')
    if variant in {"nan", "utf-8-bom", "utf-16"}:
        assert (response.status_code, response.json()["error"]["code"]) == (400, "validation_error")
