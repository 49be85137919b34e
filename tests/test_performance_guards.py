"""Guards for the hot-path work of docs/performance.md "Performance": query counts and the caches' correctness.

Nothing here is timed; speed is measured by bench/herd.py. These tests pin what the speed rests
on (how many queries a request costs) and that no cache ever changes an answer.
"""

import re
from datetime import timedelta
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token

from sales import gate, purchase
from sales.exceptions import SaleNotActive, SoldOut
from sales.models import FlashSale, Purchase
from tests.conftest import client_for
from tests.factories import SaleFactory, UserFactory

PURCHASE = "/api/v1/flashsales/purchase"
ACTIVE = "/api/v1/flashsales/active"
TRANSACTION_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE SAVEPOINT)\b", re.I)


def statements(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if not TRANSACTION_CONTROL.match(q["sql"])]


def buy(client, sale, quantity=1):
    return client.post(PURCHASE, {"saleId": sale.pk, "quantity": quantity}, format="json")


def sold_out_sale(**kwargs) -> FlashSale:
    return SaleFactory(original_stock=3, current_stock=0, **kwargs)


# --- query counts ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # a real transaction: no test savepoints in the count
def test_a_successful_purchase_with_a_known_token_is_one_statement_on_postgresql(buyer):
    client = client_for(buyer)
    client.get(ACTIVE)  # the token is now cached, as for every request after a buyer's first
    sale = SaleFactory()

    with CaptureQueriesContext(connection) as captured:
        response = buy(client, sale)

    assert response.status_code == 201
    # No auth query. PostgreSQL: one call of flashsale_purchase (decrement, cap, insert, commit in
    # one round trip). SQLite: the conditional UPDATE, the stock-and-holding read, the INSERT.
    expected = 1 if connection.vendor == "postgresql" else 3
    assert len(statements(captured)) == expected, "\n".join(statements(captured))
    assert Purchase.objects.filter(user=buyer, sale=sale).count() == 1


@pytest.mark.django_db
def test_a_purchase_refused_as_sold_out_is_replayed_from_the_gate_without_queries(buyer, django_assert_num_queries):
    sale = sold_out_sale()
    client = client_for(buyer)
    first = buy(client, sale)

    with django_assert_num_queries(0):
        second = buy(client, sale)

    assert first.status_code == second.status_code == 409
    assert second.json() == first.json()
    assert second.json()["error"] == {
        "code": "sold_out",
        "message": SoldOut.default_message,
        "details": {"saleId": sale.pk, "currentStock": 0},
    }
    sale.refresh_from_db()
    assert (sale.current_stock, sale.version) == (0, 1)
    assert Purchase.objects.count() == 0


@pytest.mark.django_db
def test_a_purchase_before_start_is_replayed_from_the_gate_with_the_same_details(buyer, django_assert_num_queries):
    start = timezone.now() + timedelta(minutes=10)
    sale = SaleFactory(start_time=start, end_time=start + timedelta(hours=1))
    client = client_for(buyer)
    first = buy(client, sale)

    with django_assert_num_queries(0):
        second = buy(client, sale)

    assert second.status_code == first.status_code == 409
    assert second.json() == first.json()
    details = second.json()["error"]["details"]
    assert second.json()["error"]["code"] == "sale_not_active"
    assert details["startTime"] == start.isoformat().replace("+00:00", "Z")
    assert details["endTime"] == (start + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert Purchase.objects.count() == 0


@pytest.mark.django_db(transaction=True)  # the gate is reopened by an on_commit hook
def test_a_restock_after_sell_out_sells_again_immediately(buyer, staff):
    sale = sold_out_sale()
    client = client_for(buyer)
    assert buy(client, sale).json()["error"]["code"] == "sold_out"  # now remembered by the gate

    restock = client_for(staff).post(f"/api/v1/flashsales/{sale.pk}/add-units", {"units": 2}, format="json")
    response = buy(client, sale)

    assert restock.status_code == 200
    assert response.status_code == 201, response.json()
    assert response.json()["data"]["remainingStock"] == 1
    sale.refresh_from_db()
    assert (sale.original_stock, sale.current_stock) == (5, 1)
    assert Purchase.objects.filter(sale=sale, user=buyer).count() == 1


@pytest.mark.django_db(transaction=True)
def test_raising_original_stock_of_a_sold_out_sale_reopens_it_at_once(buyer, staff):
    sale = sold_out_sale()
    client = client_for(buyer)
    assert buy(client, sale).json()["error"]["code"] == "sold_out"

    edit = client_for(staff).patch(
        f"/api/v1/flashsales/{sale.pk}", {"version": sale.version, "originalStock": 4}, format="json"
    )
    response = buy(client, sale)

    assert edit.status_code == 200, edit.json()
    assert response.status_code == 201, response.json()
    sale.refresh_from_db()
    assert (sale.original_stock, sale.current_stock) == (4, 0)


@pytest.mark.django_db(transaction=True)
def test_ending_a_sold_out_sale_turns_the_remembered_sold_out_into_sale_not_active(buyer, staff):
    sale = sold_out_sale()
    client = client_for(buyer)
    assert buy(client, sale).json()["error"]["code"] == "sold_out"

    ended = client_for(staff).post(f"/api/v1/flashsales/{sale.pk}/end")
    response = buy(client, sale)

    assert ended.status_code == 200
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "sale_not_active"
    sale.refresh_from_db()
    assert response.json()["error"]["details"]["endTime"] == sale.end_time.isoformat().replace("+00:00", "Z")


@pytest.mark.django_db
def test_a_remembered_pending_refusal_stops_at_the_start_time():
    start = timezone.now() + timedelta(minutes=10)
    sale = SaleFactory(start_time=start, end_time=start + timedelta(hours=1))
    generation = purchase.refuse_from_gate(sale_id=sale.pk, moment=timezone.now())
    gate.remember(
        sale_id=sale.pk,
        generation=generation,
        known=gate.Known(sale.start_time, sale.end_time, sold_out=False, paused=False),
    )

    with pytest.raises(SaleNotActive):
        purchase.refuse_from_gate(sale_id=sale.pk, moment=start - timedelta(microseconds=1))
    # live now: the database decides
    assert purchase.refuse_from_gate(sale_id=sale.pk, moment=start) == generation


@pytest.mark.django_db
def test_a_refusal_read_before_an_invalidation_is_never_replayed_after_it():
    sale = sold_out_sale()
    # A request reads the generation, then a restock commits and bumps it, then the request
    # (which saw the old stock) records its refusal: that refusal belongs to the old generation.
    generation = purchase.refuse_from_gate(sale_id=sale.pk, moment=timezone.now())
    gate.forget(sale.pk)
    gate.remember(
        sale_id=sale.pk,
        generation=generation,
        known=gate.Known(sale.start_time, sale.end_time, sold_out=True, paused=False),
    )

    assert purchase.refuse_from_gate(sale_id=sale.pk, moment=timezone.now()) == generation + 1


@pytest.mark.django_db
def test_purchases_still_sell_and_refuse_correctly_when_the_cache_is_down(buyer):
    sale = SaleFactory(original_stock=1)
    client = client_for(buyer)
    other = client_for(UserFactory())

    with (
        mock.patch.object(cache, "get_many", side_effect=ConnectionError("cache down")),
        mock.patch.object(cache, "set", side_effect=ConnectionError("cache down")),
        mock.patch.object(cache, "get", side_effect=ConnectionError("cache down")),
    ):
        sold = buy(client, sale)
        refused = buy(other, sale)

    assert sold.status_code == 201
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "sold_out"
    sale.refresh_from_db()
    assert sale.current_stock == 0
    assert Purchase.objects.filter(sale=sale).count() == 1


@pytest.mark.django_db
def test_a_stale_not_sold_out_entry_cannot_make_the_gate_sell():
    # The gate has no "yes": whatever it holds, a sold-out sale is refused by the database.
    sale = sold_out_sale()
    cache.set(
        f"sales:gate:{sale.pk}",
        {"generation": 0, "sold_out": False, "start_time": sale.start_time, "end_time": sale.end_time},
    )
    buyer = UserFactory()

    response = buy(client_for(buyer), sale)

    assert response.status_code == 409 and response.json()["error"]["code"] == "sold_out"
    assert Purchase.objects.count() == 0


# --- cached token authentication ------------------------------------------------------------


@pytest.mark.django_db
def test_a_known_token_authenticates_without_a_query(buyer, django_assert_num_queries):
    client = client_for(buyer)
    sale = sold_out_sale()
    buy(client, sale)  # first request: token read from the database and cached

    with django_assert_num_queries(0):
        response = buy(client, sale)

    assert response.status_code == 409  # authenticated (not 401), refused by the gate


@pytest.mark.django_db(transaction=True)  # the second invalidation runs on commit
def test_logout_makes_a_cached_token_fail_at_once(buyer):
    client = client_for(buyer)
    assert client.get(ACTIVE).status_code in (200, 404)  # cached now

    logout = client.post("/api/v1/auth/logout")
    after = client.get(ACTIVE)

    assert logout.status_code == 200
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "authentication_failed"
    assert not Token.objects.filter(user=buyer).exists()


@pytest.mark.django_db(transaction=True)
def test_deleting_a_token_outside_the_api_makes_it_fail_at_once(buyer):
    client = client_for(buyer)
    client.get(ACTIVE)

    Token.objects.filter(user=buyer).delete()  # e.g. from the admin

    response = client.get(ACTIVE)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.django_db(transaction=True)
def test_deactivating_a_user_makes_their_cached_token_fail_at_once(buyer):
    client = client_for(buyer)
    client.get(ACTIVE)

    buyer.is_active = False
    buyer.save()

    response = client.get(ACTIVE)
    assert response.status_code == 401
    assert Token.objects.filter(user=buyer).exists()  # the token row is untouched; the user is refused


@pytest.mark.django_db(transaction=True)
def test_losing_staff_rights_applies_to_a_cached_token_at_once(staff):
    client = client_for(staff)
    client.get(ACTIVE)
    sale = SaleFactory()

    staff.is_staff = False
    staff.save()

    response = client.post(f"/api/v1/flashsales/{sale.pk}/add-units", {"units": 1}, format="json")
    assert response.status_code == 403
    sale.refresh_from_db()
    assert sale.original_stock == 200


@pytest.mark.django_db
def test_a_cached_user_is_the_same_user_as_in_the_database(buyer):
    client = client_for(buyer)
    sale = SaleFactory()
    client.get(ACTIVE)

    response = buy(client, sale)  # served from the cached token

    assert response.status_code == 201
    assert Purchase.objects.get().user_id == buyer.pk


def test_autobahn_formats_nothing_for_debug_lines_it_does_not_write():
    # Its colour-decorated log arguments cost a fifth of Daphne's CPU per WebSocket message (flashsale/asgi.py).
    from autobahn.twisted import websocket as twisted_websocket
    from autobahn.websocket import protocol

    import flashsale.asgi  # noqa: F401  (what Daphne loads)

    send_data = protocol.WebSocketProtocol.sendData
    assert protocol.hltype(send_data) is send_data
    assert protocol.hlval(5) == 5
    assert twisted_websocket.hltype(send_data) is send_data
