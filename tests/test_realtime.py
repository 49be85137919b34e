"""WebSocket API (ws/sales/...): snapshot, pushes after commit only, coalescing, close codes.

Runs the real ASGI application (origin check, routing, consumers) in-process with Channels'
WebsocketCommunicator, on whichever channel layer the settings pick (Redis in CI).
"""

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.utils import timezone

from flashsale.asgi import application
from live import realtime
from live.management.commands.runsaleclock import Command as SaleClock
from sales import purchase as sales_purchase
from sales import services
from sales.exceptions import InvalidSaleChange
from sales.models import FlashSale
from tests.factories import SaleFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ORIGIN = [(b"origin", b"http://localhost")]
QUIET = 0.3  # seconds of silence that count as "nothing more was sent"


async def open_socket(path: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=ORIGIN)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def drain(communicator: WebsocketCommunicator) -> list[dict]:
    """Every message that arrives until the socket stays quiet for QUIET seconds."""
    messages = []
    while not await communicator.receive_nothing(timeout=QUIET):
        messages.append(await communicator.receive_json_from())
    return messages


def of_type(messages: list[dict], kind: str) -> list[dict]:
    return [message for message in messages if message["type"] == kind]


async def close(communicator: WebsocketCommunicator) -> None:
    await communicator.disconnect()


# --- snapshot and pushes --------------------------------------------------------------------


async def test_connecting_sends_a_snapshot_of_the_sale_as_stored():
    sale = await sync_to_async(SaleFactory)(name="Sneakers", original_stock=10, current_stock=7)

    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    snapshot = await socket.receive_json_from()

    stored = await FlashSale.objects.aget(pk=sale.pk)
    assert snapshot == {
        "type": "snapshot",
        "saleId": sale.pk,
        "name": "Sneakers",
        "status": "active",
        "startTime": realtime.iso(stored.start_time),
        "endTime": realtime.iso(stored.end_time),
        "originalStock": 10,
        "currentStock": 7,
        "version": stored.version,
        "stockVersion": stored.stock_version,
        "paused": False,
        "maxPerBuyer": stored.buyer_limit,
        "maxPerPurchase": stored.purchase_limit,
        "heldStock": 0,
        "waitingRoom": False,
    }
    assert snapshot["startTime"].endswith("Z")
    await close(socket)


async def test_a_committed_purchase_pushes_exactly_one_stock_message_with_the_new_stock():
    sale = await sync_to_async(SaleFactory)(original_stock=10)
    buyer = await sync_to_async(UserFactory)(name="Ada")
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    snapshot = await socket.receive_json_from()

    await sync_to_async(sales_purchase.purchase)(user=buyer, sale_id=sale.pk, quantity=3)
    messages = await drain(socket)

    stored = await FlashSale.objects.aget(pk=sale.pk)
    assert (stored.current_stock, stored.stock_version) == (7, snapshot["stockVersion"] + 1)
    assert stored.version == snapshot["version"]  # a purchase is not a staff edit
    assert of_type(messages, "stock") == [
        {"type": "stock", "saleId": sale.pk, "currentStock": 7, "stockVersion": stored.stock_version}
    ]
    [purchase] = of_type(messages, "purchase")
    assert purchase["userName"] == "Ada" and purchase["quantity"] == 3 and purchase["saleId"] == sale.pk
    assert of_type(messages, "status") == []  # still active: no status news
    await close(socket)


async def test_a_rolled_back_purchase_pushes_nothing():
    sale = await sync_to_async(SaleFactory)(original_stock=10)
    buyer = await sync_to_async(UserFactory)()
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()

    class Abandon(Exception):
        pass

    def buy_then_roll_back():
        with pytest.raises(Abandon), transaction.atomic():
            sales_purchase.purchase(user=buyer, sale_id=sale.pk, quantity=2)
            raise Abandon

    await sync_to_async(buy_then_roll_back)()

    assert await drain(socket) == []
    stored = await FlashSale.objects.aget(pk=sale.pk)
    assert (stored.current_stock, stored.version) == (10, 1)
    await close(socket)


async def test_selling_the_last_unit_pushes_stock_zero_then_completed_status():
    sale = await sync_to_async(SaleFactory)(original_stock=2)
    buyer = await sync_to_async(UserFactory)()
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()

    await sync_to_async(sales_purchase.purchase)(user=buyer, sale_id=sale.pk, quantity=2)
    messages = await drain(socket)

    kinds = [message["type"] for message in messages if message["type"] in {"stock", "status"}]
    assert kinds == ["stock", "status"]
    assert of_type(messages, "stock")[0]["currentStock"] == 0
    assert of_type(messages, "status") == [{"type": "status", "saleId": sale.pk, "status": "completed"}]
    assert (await FlashSale.objects.aget(pk=sale.pk)).current_stock == 0
    await close(socket)


async def test_a_restock_pushes_the_new_stock_and_status():
    sale = await sync_to_async(SaleFactory)(original_stock=5)
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()

    await sync_to_async(services.add_units)(sale_id=sale.pk, units=3)
    messages = await drain(socket)

    stored = await FlashSale.objects.aget(pk=sale.pk)
    assert stored.current_stock == 8
    assert of_type(messages, "stock") == [
        {"type": "stock", "saleId": sale.pk, "currentStock": 8, "stockVersion": stored.stock_version}
    ]
    assert of_type(messages, "status") == [{"type": "status", "saleId": sale.pk, "status": "active"}]
    await close(socket)


async def test_ending_a_sale_pushes_a_fresh_snapshot_and_completed_status():
    sale = await sync_to_async(SaleFactory)()
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()

    await sync_to_async(services.end_sale_now)(sale_id=sale.pk)
    messages = await drain(socket)

    stored = await FlashSale.objects.aget(pk=sale.pk)
    [snapshot] = of_type(messages, "snapshot")
    assert snapshot["endTime"] == realtime.iso(stored.end_time) and snapshot["version"] == stored.version
    assert of_type(messages, "status") == [{"type": "status", "saleId": sale.pk, "status": "completed"}]
    await close(socket)


# --- coalescing and ordering ----------------------------------------------------------------


async def send_stock(sale_id: int, versions: list[int]) -> None:
    layer = get_channel_layer()
    for version in versions:
        stock = realtime.stock_message(sale_id=sale_id, current_stock=1000 - version, stock_version=version)
        await layer.group_send(realtime.sale_group(sale_id), {"type": realtime.SALE_EVENT, "message": {"stock": stock}})


async def test_a_burst_of_stock_changes_is_coalesced_to_the_first_and_the_latest(settings):
    # A long interval makes the window deterministic: the first change goes out at once, the rest
    # wait; a status message then flushes the newest pending value ahead of itself.
    settings.STOCK_PUSH_INTERVAL_MS = 60_000
    sale = await sync_to_async(SaleFactory)(original_stock=1000)
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()

    await send_stock(sale.pk, list(range(2, 52)))
    status = realtime.status_message(sale_id=sale.pk, status="completed")
    await get_channel_layer().group_send(
        realtime.sale_group(sale.pk), {"type": realtime.SALE_EVENT, "message": {"status": status}}
    )
    messages = await drain(socket)

    assert messages == [
        {"type": "stock", "saleId": sale.pk, "currentStock": 998, "stockVersion": 2},
        {"type": "stock", "saleId": sale.pk, "currentStock": 949, "stockVersion": 51},
        status,
    ]
    await close(socket)


async def test_the_latest_stock_is_always_sent_after_a_burst(settings):
    settings.STOCK_PUSH_INTERVAL_MS = 100
    sale = await sync_to_async(SaleFactory)(original_stock=1000)
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()

    await send_stock(sale.pk, list(range(2, 42)))
    stock = of_type(await drain(socket), "stock")

    versions = [message["stockVersion"] for message in stock]
    assert versions == sorted(set(versions)), "versions must strictly increase"
    assert stock[-1] == {"type": "stock", "saleId": sale.pk, "currentStock": 959, "stockVersion": 41}
    await close(socket)


async def test_stock_older_than_what_the_socket_already_sent_is_dropped():
    sale = await sync_to_async(SaleFactory)(original_stock=1000, stock_version=10)
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    assert (await socket.receive_json_from())["stockVersion"] == 10

    await send_stock(sale.pk, [9, 10, 12, 11])
    stock = of_type(await drain(socket), "stock")

    assert [message["stockVersion"] for message in stock] == [12]
    await close(socket)


# --- what clients may send, and bad paths ---------------------------------------------------


async def test_ping_is_answered_and_anything_else_is_ignored():
    sale = await sync_to_async(SaleFactory)(original_stock=5)
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()

    await socket.send_to(text_data=json.dumps({"type": "purchase", "saleId": sale.pk, "quantity": 5}))
    await socket.send_to(text_data="not json")
    await socket.send_to(bytes_data=b"\x00\x01")
    assert await drain(socket) == []
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}

    stored = await FlashSale.objects.aget(pk=sale.pk)
    assert (stored.current_stock, stored.version) == (5, 1)
    await close(socket)


async def test_an_unknown_sale_closes_with_4404():
    socket = await open_socket("/ws/sales/987654/")
    assert await socket.receive_output(timeout=2) == {"type": "websocket.close", "code": 4404}
    # Finish the consumer here: left to the event loop's teardown, cancelling its channels_redis
    # receive hung the run once (CI, 300 s timeout).
    await close(socket)


@pytest.mark.parametrize(
    "path",
    ["/ws/sales/abc/", "/ws/sales/0/", "/ws/sales/-1/", "/ws/sales/99999999999999999999/", "/ws/sales/", "/ws/nope/"],
)
async def test_a_malformed_path_closes_with_4400(path):
    socket = await open_socket(path)
    assert await socket.receive_output(timeout=2) == {"type": "websocket.close", "code": 4400}
    await close(socket)


async def test_a_page_on_another_origin_cannot_open_a_socket():
    sale = await sync_to_async(SaleFactory)()
    communicator = WebsocketCommunicator(
        application, f"/ws/sales/{sale.pk}/", headers=[(b"origin", b"http://evil.example")]
    )
    connected, _ = await communicator.connect()
    assert not connected


# --- ws/sales/active/ -----------------------------------------------------------------------


async def test_the_active_socket_follows_the_live_sale_then_the_next_one():
    now = timezone.now()
    live = await sync_to_async(SaleFactory)(original_stock=1)
    upcoming = await sync_to_async(SaleFactory)(start_time=now + timedelta(hours=1))
    buyer = await sync_to_async(UserFactory)()
    socket = await open_socket("/ws/sales/active/")
    assert (await socket.receive_json_from())["saleId"] == live.pk

    await sync_to_async(sales_purchase.purchase)(user=buyer, sale_id=live.pk, quantity=1)
    messages = await drain(socket)

    assert of_type(messages, "stock")[0] == {"type": "stock", "saleId": live.pk, "currentStock": 0, "stockVersion": 2}
    assert of_type(messages, "status") == [{"type": "status", "saleId": live.pk, "status": "completed"}]
    [switched] = of_type(messages, "snapshot")
    assert (switched["saleId"], switched["status"]) == (upcoming.pk, "pending")
    await close(socket)


async def test_the_active_socket_waits_for_a_sale_when_there_is_none():
    socket = await open_socket("/ws/sales/active/")
    assert await socket.receive_json_from() == {"type": "snapshot", "saleId": None, "status": None}

    now = timezone.now()
    sale = await sync_to_async(services.create_sale)(
        name="Later", start_time=now + timedelta(minutes=1), end_time=now + timedelta(hours=1)
    )
    messages = await drain(socket)

    assert [(m["saleId"], m["status"]) for m in of_type(messages, "snapshot")] == [(sale.pk, "pending")]
    await close(socket)


async def test_deleting_the_upcoming_sale_moves_the_active_socket_to_the_next_one():
    now = timezone.now()
    first = await sync_to_async(SaleFactory)(start_time=now + timedelta(hours=1))
    second = await sync_to_async(SaleFactory)(start_time=now + timedelta(hours=2))
    socket = await open_socket("/ws/sales/active/")
    assert (await socket.receive_json_from())["saleId"] == first.pk

    await sync_to_async(services.delete_sale)(sale=first)
    messages = await drain(socket)

    assert [(m["saleId"], m["status"]) for m in of_type(messages, "snapshot")] == [(second.pk, "pending")]
    assert not await FlashSale.objects.filter(pk=first.pk).aexists()
    await close(socket)


async def test_a_live_sale_is_not_deleted_and_nothing_is_pushed():
    sale = await sync_to_async(SaleFactory)()
    socket = await open_socket("/ws/sales/active/")
    await socket.receive_json_from()

    with pytest.raises(InvalidSaleChange):
        await sync_to_async(services.delete_sale)(sale=sale)

    assert await drain(socket) == []
    assert await FlashSale.objects.filter(pk=sale.pk).aexists()
    await close(socket)


# --- the sale clock -------------------------------------------------------------------------


async def test_the_sale_clock_announces_a_start_it_passed():
    now = timezone.now()
    sale = await sync_to_async(SaleFactory)(start_time=now - timedelta(seconds=1))
    ended = await sync_to_async(SaleFactory)(start_time=now - timedelta(hours=1), end_time=now - timedelta(seconds=1))
    untouched = await sync_to_async(SaleFactory)(start_time=now - timedelta(minutes=10))
    sockets = [await open_socket(f"/ws/sales/{s.pk}/") for s in (sale, ended, untouched)]
    for socket in sockets:
        await socket.receive_json_from()

    await sync_to_async(SaleClock().tick)(now - timedelta(seconds=5))

    assert await drain(sockets[0]) == [{"type": "status", "saleId": sale.pk, "status": "active"}]
    assert await drain(sockets[1]) == [{"type": "status", "saleId": ended.pk, "status": "completed"}]
    assert await drain(sockets[2]) == []
    for socket in sockets:
        await close(socket)


async def test_a_client_that_sends_no_origin_may_watch():
    # Programs (API clients, probes, the fan-out benchmark) send no Origin; stock is public.
    sale = await sync_to_async(SaleFactory)(original_stock=10)
    communicator = WebsocketCommunicator(application, f"/ws/sales/{sale.pk}/")
    connected, _ = await communicator.connect()

    assert connected
    snapshot = await communicator.receive_json_from()
    assert (snapshot["type"], snapshot["saleId"], snapshot["currentStock"]) == ("snapshot", sale.pk, 10)
    await communicator.disconnect()
