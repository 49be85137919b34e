"""The lean API path: refusals the sale gate knows are answered before DRF's dispatch, from one
cache read of token and gate together, with the same answer as the full path; anything else goes
down the full path unchanged. API requests skip sessions, CSRF and messages."""

import contextlib
from unittest import mock

import pytest
from django.core.cache import cache
from django.test import override_settings

from sales.api import PurchaseView
from sales.models import Purchase
from tests.factories import SaleFactory

pytestmark = pytest.mark.django_db

PURCHASE = "/api/v1/flashsales/purchase"


def buy(client, sale, quantity=1, **extra):
    return client.post(PURCHASE, {"saleId": sale.pk, "quantity": quantity}, format="json", **extra)


@pytest.fixture
def gated_sold_out_sale(buyer_api):
    """A sold-out sale whose refusal the gate has recorded, and a buyer whose token is cached."""
    sale = SaleFactory(original_stock=3, current_stock=0)
    first = buy(buyer_api, sale)  # the full path: caches the token, records the refusal in the gate
    assert first.json()["error"]["code"] == "sold_out"
    return sale, first


def test_a_gated_refusal_never_reaches_drf_and_answers_exactly_as_the_full_path(
    buyer_api, gated_sold_out_sale, django_assert_num_queries
):
    sale, first = gated_sold_out_sale
    read = cache.get  # unpatched: the local-memory cache's get_many is a loop of get

    def one_read(keys):
        return {key: value for key in keys if (value := read(key)) is not None}

    with (
        mock.patch.object(PurchaseView, "dispatch", side_effect=AssertionError("reached DRF")),
        mock.patch.object(cache, "get_many", side_effect=one_read) as get_many,
        mock.patch.object(cache, "get", wraps=cache.get) as get,
        # With Redis, the request's one round trip (core.prefetch) reads token and gate.
        mock.patch.object(cache, "read_and_count", wraps=getattr(cache, "read_and_count", None), create=True)
        if hasattr(cache, "read_and_count")
        else contextlib.nullcontext(mock.Mock(call_count=0)) as read_and_count,
        django_assert_num_queries(0),
    ):
        second = buy(buyer_api, sale)

    assert (second.status_code, second.json()) == (first.status_code, first.json())
    assert second["Content-Type"] == "application/json"
    # Token and gate in one read; no separate token or gate lookup.
    assert get_many.call_count + read_and_count.call_count == 1
    separate_reads = [call.args[0] for call in get.call_args_list if call.args[0].startswith(("auth:", "sales:"))]
    assert not separate_reads
    assert Purchase.objects.count() == 0


@pytest.mark.parametrize(
    "variant",
    ["idempotency-key", "unknown-token", "quantity-as-string", "not-json", "quantity-over-the-limit"],
)
def test_requests_the_fast_path_is_not_sure_of_take_the_full_path(buyer_api, api, gated_sold_out_sale, variant):
    sale, _ = gated_sold_out_sale
    with mock.patch.object(PurchaseView, "dispatch", wraps=PurchaseView().dispatch) as dispatch:
        if variant == "idempotency-key":
            response = buy(buyer_api, sale, HTTP_IDEMPOTENCY_KEY="k-1")
        elif variant == "unknown-token":
            api.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
            response = buy(api, sale)
        elif variant == "quantity-as-string":
            response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": "1"}, format="json")
        elif variant == "not-json":
            response = buyer_api.generic("POST", PURCHASE, "{nope", content_type="application/json")
        else:
            response = buy(buyer_api, sale, quantity=6)

    assert dispatch.called
    expected = {
        "idempotency-key": (409, "sold_out"),
        "unknown-token": (401, "authentication_failed"),
        "quantity-as-string": (400, "validation_error"),
        "not-json": (400, "validation_error"),
        "quantity-over-the-limit": (400, "validation_error"),
    }[variant]
    assert (response.status_code, response.json()["error"]["code"]) == expected


@override_settings(RATELIMIT_ENABLE=True, RATELIMIT_PURCHASE="2/d")
def test_gated_refusals_still_count_against_the_purchase_rate_limit(buyer_api, gated_sold_out_sale):
    sale, _ = gated_sold_out_sale  # recorded before these settings: not counted
    answers = [buy(buyer_api, sale) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [409, 409, 429]
    third = answers[-1]
    assert third.json()["error"]["code"] == "rate_limited"
    assert int(third["Retry-After"]) >= 1


def test_api_requests_skip_sessions_and_messages(buyer_api, buyer, client):
    sale = SaleFactory()
    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")

    assert response.status_code == 201
    assert not hasattr(response.wsgi_request, "session")
    assert not hasattr(response.wsgi_request, "_messages")
    assert "csrftoken" not in response.cookies and "sessionid" not in response.cookies
    # Pages keep them.
    page = client.get("/admin/login/")
    assert page.status_code == 200 and hasattr(page.wsgi_request, "session")
    assert Purchase.objects.filter(user=buyer).count() == 1
