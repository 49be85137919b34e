"""The database feed (live/db_feed.py): with REALTIME_POLL_MS set, as under ./scripts/serve without
Redis, sockets learn every change by the hub reading the database, and nothing is sent after commit.

In-process with WebsocketCommunicator, so it runs on SQLite too; the cross-process case (gunicorn
beside Daphne) is tests/test_first_command.py.
"""

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.utils import timezone

from live import realtime
from live.db_feed import DatabaseFeed
from sales import holds, purchase, selectors, services, waitlist
from sales.models import FlashSale, Purchase, WaitlistEntry
from tests.factories import SaleFactory, UserFactory
from tests.test_realtime import close, drain, of_type, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

WAIT = 10


@database_sync_to_async
def stored(sale_id: int) -> FlashSale:
    """The sale as stored; through database_sync_to_async, which closes the connection it used
    (the async ORM's thread would keep one open past the test database's teardown)."""
    return FlashSale.objects.get(pk=sale_id)


@database_sync_to_async
def purchases_of(sale_id: int) -> int:
    return Purchase.objects.filter(sale_id=sale_id).count()


@database_sync_to_async
def sales_count() -> int:
    return FlashSale.objects.count()


@pytest.fixture(autouse=True)
def _database_feed(settings):
    settings.REALTIME_POLL_MS = 20


async def receive_until(socket, kind: str) -> tuple[dict, list[dict]]:
    seen = []
    while True:
        message = await socket.receive_json_from(timeout=WAIT)
        if message["type"] == kind:
            return message, seen
        seen.append(message)


async def test_a_purchase_reaches_the_socket_once_with_the_stock_it_left():
    sale = await sync_to_async(SaleFactory)(original_stock=10)
    buyer = await sync_to_async(UserFactory)(name="Ada")
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    snapshot = await socket.receive_json_from()

    await sync_to_async(purchase.purchase)(user=buyer, sale_id=sale.pk, quantity=2)
    stock, before = await receive_until(socket, "stock")
    later = await drain(socket)
    await close(socket)

    row = await stored(sale.pk)
    assert (row.current_stock, await purchases_of(sale.pk)) == (8, 1)
    assert snapshot["currentStock"] == 10
    assert stock == {"type": "stock", "saleId": sale.pk, "currentStock": 8, "stockVersion": row.stock_version}
    # Once: the feed is the only source, the commit itself sends nothing.
    purchases = of_type(before + later, "purchase")
    assert [(p["userName"], p["quantity"]) for p in purchases] == [("Ada", 2)]
    assert of_type(later, "stock") == []


async def test_the_last_unit_is_followed_by_sold_out_and_an_edit_by_a_snapshot():
    sale = await sync_to_async(SaleFactory)(original_stock=1)
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()

    await sync_to_async(purchase.purchase)(user=await sync_to_async(UserFactory)(), sale_id=sale.pk, quantity=1)
    stock, _ = await receive_until(socket, "stock")
    status, _ = await receive_until(socket, "status")
    version = (await stored(sale.pk)).version
    await sync_to_async(services.update_sale)(sale_id=sale.pk, expected_version=version, changes={"name": "Renamed"})
    snapshot, _ = await receive_until(socket, "snapshot")
    await close(socket)

    row = await stored(sale.pk)
    assert (row.current_stock, row.name) == (0, "Renamed")
    assert (stock["currentStock"], status["status"]) == (0, "completed")
    assert (snapshot["name"], snapshot["version"]) == ("Renamed", row.version)


async def test_a_sale_that_starts_is_announced_without_the_sale_clock():
    start = timezone.now() + timedelta(milliseconds=500)
    sale = await sync_to_async(SaleFactory)(start_time=start, end_time=start + timedelta(hours=1))
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    snapshot = await socket.receive_json_from()

    statuses = [(await receive_until(socket, "status"))[0]["status"]]
    while statuses[-1] != "active":
        statuses.append((await receive_until(socket, "status"))[0]["status"])
    await close(socket)

    # The feed restates the status of its first read ("pending"), then announces the start.
    assert snapshot["status"] == "pending"
    assert set(statuses[:-1]) <= {"pending"}
    assert (await stored(sale.pk)).version == snapshot["version"]  # nothing was written


async def test_the_home_page_socket_switches_to_a_sale_created_after_it_connected():
    socket = await open_socket("/ws/sales/active/")
    empty = await socket.receive_json_from()

    sale = await sync_to_async(services.create_sale)(
        name="New", start_time=timezone.now() - timedelta(minutes=1), end_time=timezone.now() + timedelta(hours=1)
    )
    snapshot, _ = await receive_until(socket, "snapshot")
    await close(socket)

    assert empty["saleId"] is None
    assert (snapshot["saleId"], snapshot["name"]) == (sale.pk, "New")
    assert await sales_count() == 1


# --- holds (issue 23): held units, a later confirm, a waitlist offer ------------------------


async def receive_held(socket, units: int) -> list[dict]:
    """Every message up to the `held` one that tells `units` (the feed's first read restates the
    held units, which may still be the ones before the change)."""
    seen = []
    while True:
        message, before = await receive_until(socket, "held")
        seen += before + [message]
        if message["heldStock"] == units:
            return seen


@database_sync_to_async
def purchase_row(purchase_id: int) -> Purchase:
    return Purchase.objects.get(pk=purchase_id)


async def test_a_hold_and_its_release_reach_the_socket_as_held_units():
    sale = await sync_to_async(SaleFactory)(original_stock=5, hold_seconds=600)
    buyer = await sync_to_async(UserFactory)(name="Ada")
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()

    order = await sync_to_async(purchase.purchase)(user=buyer, sale_id=sale.pk, quantity=2)
    while_held = await receive_held(socket, 2)
    await sync_to_async(holds.release)(user=buyer, purchase_id=order.purchase_id)
    after_release = await receive_held(socket, 0)
    later = await drain(socket)
    await close(socket)

    row = await stored(sale.pk)
    assert ((await purchase_row(order.purchase_id)).status, row.current_stock) == ("released", 5)
    assert while_held[-1] == {"type": "held", "saleId": sale.pk, "heldStock": 2}
    # A hold is not on the purchase feed, and each change of the held units is told once.
    assert of_type(while_held + after_release + later, "purchase") == []
    assert of_type(later, "held") == []


async def test_a_hold_confirmed_after_a_later_purchase_is_announced_once():
    sale = await sync_to_async(SaleFactory)(original_stock=5, hold_seconds=600)
    ada, bea = await sync_to_async(UserFactory)(name="Ada"), await sync_to_async(UserFactory)(name="Bea")
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()

    first = await sync_to_async(purchase.purchase)(user=ada, sale_id=sale.pk, quantity=1)
    second = await sync_to_async(purchase.purchase)(user=bea, sale_id=sale.pk, quantity=2)
    await sync_to_async(holds.confirm)(user=bea, purchase_id=second.purchase_id)
    # The feed has now announced a purchase with an id above Ada's hold.
    bea_seen, before_bea = await receive_until(socket, "purchase")
    await sync_to_async(holds.confirm)(user=ada, purchase_id=first.purchase_id)
    ada_seen, before_ada = await receive_until(socket, "purchase")
    later = await drain(socket)
    await close(socket)

    rows = [await purchase_row(order.purchase_id) for order in (first, second)]
    assert [row.status for row in rows] == ["confirmed", "confirmed"]
    assert [(p["userName"], p["quantity"]) for p in (bea_seen, ada_seen)] == [("Bea", 2), ("Ada", 1)]
    assert of_type(before_bea + before_ada + later, "purchase") == []
    assert of_type(before_bea + before_ada + later, "held")[-1]["heldStock"] == 0


async def test_a_waitlist_offer_reaches_the_waiting_buyers_socket():
    sale = await sync_to_async(SaleFactory)(original_stock=1, hold_seconds=600)
    ada, bea = await sync_to_async(UserFactory)(name="Ada"), await sync_to_async(UserFactory)(name="Bea")
    order = await sync_to_async(purchase.purchase)(user=ada, sale_id=sale.pk, quantity=1)
    await sync_to_async(waitlist.join)(user=bea, sale_id=sale.pk)
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()

    await sync_to_async(holds.release)(user=ada, purchase_id=order.purchase_id)
    assert await sync_to_async(waitlist.serve)() == 1
    offer, _ = await receive_until(socket, "offer")
    later = await drain(socket)
    await close(socket)

    entry = await database_sync_to_async(WaitlistEntry.objects.select_related("purchase").get)(sale_id=sale.pk)
    assert (entry.state, entry.purchase.status, entry.purchase.user_id) == ("offered", "held", bea.pk)
    assert offer == {
        "type": "offer",
        "saleId": sale.pk,
        "purchaseId": entry.purchase_id,
        "userName": "Bea",
        "expiresAt": realtime.iso(entry.purchase.expires_at),
    }
    assert of_type(later, "offer") == []


async def test_a_sale_without_holds_costs_the_feed_no_hold_reads(monkeypatch):
    calls = []
    for name in ("hold_activity", "confirmed_after", "waitlist_offers_after"):
        monkeypatch.setattr(selectors, name, lambda *args, name=name, **kwargs: calls.append(name))
    plain = await sync_to_async(SaleFactory)(original_stock=5)
    feed = DatabaseFeed(hub=None)

    await feed._changes({plain.pk: timezone.now()}, False)
    await sync_to_async(purchase.purchase)(user=await sync_to_async(UserFactory)(), sale_id=plain.pk, quantity=1)
    messages = await feed._changes({plain.pk: timezone.now()}, False)

    assert (await stored(plain.pk)).current_stock == 4
    assert [next(iter(message)) for _, _, message in messages] == ["purchase", "stock"]
    assert calls == []
