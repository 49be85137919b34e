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

from sales import purchase, services
from sales.models import FlashSale, Purchase
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
