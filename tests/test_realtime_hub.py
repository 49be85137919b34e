"""The per-process hub (live/hub.py): one channel-layer member per process, sockets fed from memory.

Runs the real ASGI application in-process with WebsocketCommunicator, on whichever channel layer the
settings pick (Redis in CI, the in-memory layer on SQLite), like tests/test_realtime.py.
"""

import asyncio
import os
import random
import threading
from urllib.parse import urlsplit

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from flashsale.asgi import application
from live import hub as hub_module
from live import layer_sender, realtime
from live.hub import hub
from sales import purchase
from sales.models import FlashSale
from tests.factories import SaleFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ORIGIN = [(b"origin", b"http://localhost")]
WAIT = 10  # upper bound for a socket to catch up; passing runs take milliseconds


async def open_socket(path: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=ORIGIN)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def receive_until_version(socket: WebsocketCommunicator, version: int) -> list[dict]:
    """Messages up to and including the first stock or snapshot at `version` (bounded)."""
    messages = []
    async with asyncio.timeout(WAIT):
        while True:
            message = await socket.receive_json_from(timeout=WAIT)
            messages.append(message)
            if message["type"] in {"stock", "snapshot"} and message.get("stockVersion") == version:
                return messages


async def receive_until_type(socket: WebsocketCommunicator, kind: str) -> list[dict]:
    """Messages up to and including the first of type `kind` (bounded)."""
    messages = []
    async with asyncio.timeout(WAIT):
        while True:
            messages.append(await socket.receive_json_from(timeout=WAIT))
            if messages[-1]["type"] == kind:
                return messages


async def group_members(group: str) -> set[str]:
    """The channels the layer would deliver a group message to."""
    layer = get_channel_layer()
    if hasattr(layer, "groups"):  # channels' in-memory layer
        return set(layer.groups.get(group, {}))
    connection = layer.connection(layer.consistent_hash(group))  # channels_redis
    return {member.decode() for member in await connection.zrange(layer._group_key(group), 0, -1)}


async def send_stock(sale_id: int, version: int) -> None:
    stock = realtime.stock_message(sale_id=sale_id, current_stock=1000 - version, stock_version=version)
    await get_channel_layer().group_send(
        realtime.sale_group(sale_id), {"type": realtime.SALE_EVENT, "message": {"stock": stock}}
    )


def versions_shown(messages: list[dict]) -> list[int]:
    return [message["stockVersion"] for message in messages if message["type"] in {"stock", "snapshot"}]


async def test_a_hundred_sockets_on_one_sale_all_end_on_the_final_stock_after_a_burst(settings, monkeypatch):
    settings.STOCK_PUSH_INTERVAL_MS = 50
    # A flush yields to the event loop between every socket, so new messages arrive mid-flush
    # (as they do with a thousand sockets): the value they bring must still be flushed.
    monkeypatch.setattr(hub_module, "YIELD_EVERY", 1)
    sale = await sync_to_async(SaleFactory)(original_stock=100)
    buyers = [await sync_to_async(UserFactory)() for _ in range(30)]
    sockets = [await open_socket(f"/ws/sales/{sale.pk}/") for _ in range(100)]
    for socket in sockets:
        await socket.receive_json_from()

    # The whole process is one member of the sale's group, however many sockets watch it.
    assert await group_members(realtime.sale_group(sale.pk)) == {hub().channel}
    assert hub().sockets_of(sale.pk) == 100

    for buyer in buyers:
        await sync_to_async(purchase.purchase)(user=buyer, sale_id=sale.pk, quantity=1)

    stored = await FlashSale.objects.aget(pk=sale.pk)
    assert stored.current_stock == 70
    for socket in sockets:
        messages = await receive_until_version(socket, stored.stock_version)
        assert messages[-1] == {
            "type": "stock",
            "saleId": sale.pk,
            "currentStock": 70,
            "stockVersion": stored.stock_version,
        }
        shown = versions_shown(messages)
        assert shown == sorted(set(shown)), "versions must strictly increase"
    for socket in sockets:
        await socket.disconnect()


async def test_a_burst_reaches_a_hundred_sockets_coalesced_to_the_first_and_the_newest_stock(settings):
    # A long interval makes the window deterministic (as in tests/test_realtime.py): the first
    # purchase goes out at once, the next ones wait for the interval, and the last one's sold-out
    # status flushes the newest stock ahead of itself. Uncoalesced, each socket would get 30 stocks.
    settings.STOCK_PUSH_INTERVAL_MS = 60_000
    sale = await sync_to_async(SaleFactory)(original_stock=30)
    buyers = [await sync_to_async(UserFactory)() for _ in range(30)]
    sockets = [await open_socket(f"/ws/sales/{sale.pk}/") for _ in range(100)]
    snapshots = [await socket.receive_json_from() for socket in sockets]

    for buyer in buyers:
        await sync_to_async(purchase.purchase)(user=buyer, sale_id=sale.pk, quantity=1)

    stored = await FlashSale.objects.aget(pk=sale.pk)
    assert (stored.current_stock, stored.stock_version) == (0, snapshots[0]["stockVersion"] + 30)
    for socket in sockets:
        messages = await receive_until_type(socket, "status")
        stock = [message for message in messages if message["type"] == "stock"]
        assert stock == [
            {"type": "stock", "saleId": sale.pk, "currentStock": 29, "stockVersion": snapshots[0]["stockVersion"] + 1},
            {"type": "stock", "saleId": sale.pk, "currentStock": 0, "stockVersion": stored.stock_version},
        ]
        assert messages[-1] == {"type": "status", "saleId": sale.pk, "status": "completed"}
        # The first purchase, then only the newest few of the burst (the leaderboard has them all).
        purchases = [message for message in messages if message["type"] == "purchase"]
        assert len(purchases) == 1 + hub_module.PURCHASE_BURST
    for socket in sockets:
        await socket.disconnect()


def purchase_event(sale_id: int, number: int, *, sold_out: bool = False) -> dict:
    """What live.events sends after the `number`th committed purchase of one unit, of 4 units (stock
    versions above any a new sale's snapshot shows)."""
    stock = realtime.stock_message(sale_id=sale_id, current_stock=4 - number, stock_version=100 + number)
    message = {
        "stock": stock,
        "purchase": {"type": "purchase", "saleId": sale_id, "userName": f"B{number}", "quantity": 1, "timestamp": "t"},
    }
    if sold_out:
        message["status"] = realtime.status_message(sale_id=sale_id, status="completed")
    return {"type": realtime.SALE_EVENT, "message": message}


def without_sale(messages: list[dict]) -> list[dict]:
    return [{key: value for key, value in message.items() if key != "saleId"} for message in messages]


async def test_a_batch_of_purchases_reaches_sockets_as_the_same_frames_as_purchases_sent_one_by_one(settings):
    # A long interval, as above: the first purchase at once, the rest with the sold-out status.
    settings.STOCK_PUSH_INTERVAL_MS = 60_000
    apart, together = [await sync_to_async(SaleFactory)(original_stock=4) for _ in range(2)]
    sockets = {sale.pk: await open_socket(f"/ws/sales/{sale.pk}/") for sale in (apart, together)}
    for socket in sockets.values():
        await socket.receive_json_from()
    events = {
        sale.pk: [purchase_event(sale.pk, number, sold_out=number == 4) for number in range(1, 5)]
        for sale in (apart, together)
    }
    layer = get_channel_layer()

    for event in events[apart.pk]:
        await layer.group_send(realtime.sale_group(apart.pk), event)
    await layer.group_send(
        realtime.sale_group(together.pk), {"type": layer_sender.BATCH, "messages": events[together.pk]}
    )

    shown = {sale_id: await receive_until_type(socket, "status") for sale_id, socket in sockets.items()}
    assert without_sale(shown[together.pk]) == without_sale(shown[apart.pk])
    assert [message["userName"] for message in shown[together.pk] if message["type"] == "purchase"] == [
        "B1",
        "B2",
        "B3",
        "B4",
    ]
    assert [message["currentStock"] for message in shown[together.pk] if message["type"] == "stock"] == [3, 0]
    for socket in sockets.values():
        await socket.disconnect()


@pytest.mark.redis
async def test_purchases_committed_while_the_sender_is_busy_go_out_in_one_send_and_reach_every_socket(
    settings, monkeypatch
):
    settings.STOCK_PUSH_INTERVAL_MS = 60_000
    sale = await sync_to_async(SaleFactory)(original_stock=4)
    buyers = [await sync_to_async(UserFactory)(name=f"Buyer {index}") for index in range(4)]
    sockets = [await open_socket(f"/ws/sales/{sale.pk}/") for _ in range(3)]
    snapshots = [await socket.receive_json_from() for socket in sockets]
    sent: list[tuple[str, dict]] = []
    release = threading.Event()
    send = layer_sender.group_send

    def held_send(layer, group: str, message: dict) -> None:
        release.wait(WAIT)  # the first send stalls, as under a herd, so the next purchases wait together
        sent.append((group, message))
        send(layer, group, message)

    monkeypatch.setattr(layer_sender, "group_send", held_send)
    for buyer in buyers:
        await sync_to_async(purchase.purchase)(user=buyer, sale_id=sale.pk, quantity=1)
    release.set()
    assert await sync_to_async(layer_sender.wait_until_sent)(WAIT)

    to_the_sale = [message for group, message in sent if group == realtime.sale_group(sale.pk)]
    assert [len(layer_sender.unbatch(message)) for message in to_the_sale] == [1, 3]
    assert to_the_sale[1]["type"] == layer_sender.BATCH
    version = snapshots[0]["stockVersion"]
    for socket in sockets:
        messages = await receive_until_type(socket, "status")
        assert [message["userName"] for message in messages if message["type"] == "purchase"] == [
            buyer.name for buyer in buyers
        ]
        assert [message for message in messages if message["type"] == "stock"] == [
            {"type": "stock", "saleId": sale.pk, "currentStock": 3, "stockVersion": version + 1},
            {"type": "stock", "saleId": sale.pk, "currentStock": 0, "stockVersion": version + 4},
        ]
        assert messages[-1] == {"type": "status", "saleId": sale.pk, "status": "completed"}
    stored = await FlashSale.objects.aget(pk=sale.pk)
    assert (stored.current_stock, stored.stock_version) == (0, version + 4)
    for socket in sockets:
        await socket.disconnect()


async def test_no_socket_ever_sees_a_version_go_backwards_even_when_joining_mid_burst(settings, monkeypatch):
    settings.STOCK_PUSH_INTERVAL_MS = 20
    monkeypatch.setattr(hub_module, "YIELD_EVERY", 1)  # messages arrive mid-flush
    sale = await sync_to_async(SaleFactory)(original_stock=1000)
    early = [await open_socket(f"/ws/sales/{sale.pk}/") for _ in range(10)]
    versions = list(range(2, 62))
    random.Random(7).shuffle(versions)  # late and duplicate messages, as several writers produce

    late = []
    for index, version in enumerate(versions):
        await send_stock(sale.pk, version)
        if index % 6 == 0:
            late.append(await open_socket(f"/ws/sales/{sale.pk}/"))  # joins with a pending flush
        await asyncio.sleep(0.002)

    for socket in early + late:
        messages = await receive_until_version(socket, max(versions))
        assert messages[0]["type"] == "snapshot"
        shown = versions_shown(messages)
        assert shown == sorted(shown), f"a version went backwards: {shown}"
        stock_versions = [m["stockVersion"] for m in messages if m["type"] == "stock"]
        assert stock_versions == sorted(set(stock_versions)), "a stock version was sent twice or out of order"
        assert messages[-1]["currentStock"] == 1000 - max(versions)
    for socket in early + late:
        await socket.disconnect()


async def test_a_socket_that_disconnects_is_removed_and_the_others_keep_receiving():
    sale = await sync_to_async(SaleFactory)(original_stock=1000)
    sockets = [await open_socket(f"/ws/sales/{sale.pk}/") for _ in range(3)]
    for socket in sockets:
        await socket.receive_json_from()
    assert hub().sockets_of(sale.pk) == 3

    gone, *staying = sockets
    await gone.disconnect()

    assert hub().sockets_of(sale.pk) == 2
    assert await group_members(realtime.sale_group(sale.pk)) == {hub().channel}
    await send_stock(sale.pk, 5)
    for socket in staying:
        assert await socket.receive_json_from(timeout=WAIT) == {
            "type": "stock",
            "saleId": sale.pk,
            "currentStock": 995,
            "stockVersion": 5,
        }
    for socket in staying:
        await socket.disconnect()


async def test_the_hub_leaves_the_groups_when_the_last_socket_goes_and_rejoins_for_the_next():
    sale = await sync_to_async(SaleFactory)(original_stock=10)
    group = realtime.sale_group(sale.pk)
    watchers = [await open_socket(f"/ws/sales/{sale.pk}/") for _ in range(2)]
    home = await open_socket("/ws/sales/active/")
    for socket in [*watchers, home]:
        assert (await socket.receive_json_from())["saleId"] == sale.pk
    channel = hub().channel
    assert await group_members(group) == {channel}
    assert await group_members(realtime.LIFECYCLE_GROUP) == {channel}

    await watchers[0].disconnect()
    assert await group_members(group) == {channel}  # the others still watch
    await watchers[1].disconnect()
    assert await group_members(group) == {channel}  # the home page shows this sale too
    await home.disconnect()

    assert await group_members(group) == set()
    assert await group_members(realtime.LIFECYCLE_GROUP) == set()
    assert hub().task is None and hub().channel is None  # nothing left receiving

    # The next socket brings the hub back, and the pushes with it.
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()
    assert await group_members(group) == {hub().channel}
    await sync_to_async(purchase.purchase)(user=await sync_to_async(UserFactory)(), sale_id=sale.pk, quantity=1)
    stored = await FlashSale.objects.aget(pk=sale.pk)
    assert (await receive_until_version(socket, stored.stock_version))[-1]["currentStock"] == 9
    await socket.disconnect()
    assert await group_members(group) == set()


async def test_when_the_hub_loses_the_channel_layer_its_sockets_are_closed_so_pages_reconnect(monkeypatch):
    # A socket left open would show a frozen stock forever; closed, the page reconnects with
    # backoff and reads a fresh snapshot from the database.
    sale = await sync_to_async(SaleFactory)(original_stock=10)
    layer = get_channel_layer()
    broken = asyncio.Event()

    async def failing_receive(channel):
        await broken.wait()
        raise ConnectionError("channel layer unreachable")

    monkeypatch.setattr(layer, "receive", failing_receive)
    sockets = [await open_socket(f"/ws/sales/{sale.pk}/") for _ in range(2)]
    for socket in sockets:
        await socket.receive_json_from()
    group, channel = realtime.sale_group(sale.pk), hub().channel
    assert await group_members(group) == {channel}

    broken.set()

    for socket in sockets:
        assert await socket.receive_output(timeout=WAIT) == {"type": "websocket.close", "code": 1013}
    assert hub().task is None and hub().sockets_of(sale.pk) == 0
    # It leaves the group after telling the sockets (here the layer still answers group_discard).
    async with asyncio.timeout(WAIT):
        while await group_members(group):
            await asyncio.sleep(0.01)
    for socket in sockets:
        await socket.disconnect()


async def test_a_value_that_arrives_while_a_flush_is_writing_is_flushed_after_it(settings, monkeypatch):
    # With a thousand sockets a flush takes a while and lets the event loop in between sockets, so
    # new values arrive while it writes; the last of them must not wait for a flush that never comes.
    settings.STOCK_PUSH_INTERVAL_MS = 20
    sale = await sync_to_async(SaleFactory)(original_stock=1000)
    sockets = [await open_socket(f"/ws/sales/{sale.pk}/") for _ in range(3)]
    for socket in sockets:
        await socket.receive_json_from()
    writing, release = asyncio.Event(), asyncio.Event()
    real_deliver = hub_module.Watcher.deliver

    async def slow_deliver(self, sale_id, kind, version, text):
        if kind == "stock" and version == 3 and not release.is_set():
            writing.set()
            await release.wait()
        await real_deliver(self, sale_id, kind, version, text)

    monkeypatch.setattr(hub_module.Watcher, "deliver", slow_deliver)
    await send_stock(sale.pk, 2)  # leading edge: out at once
    await send_stock(sale.pk, 3)  # inside the interval: the trailing flush carries it
    await asyncio.wait_for(writing.wait(), WAIT)  # that flush is now halfway through its sockets
    await send_stock(sale.pk, 4)
    async with asyncio.timeout(WAIT):
        while hub().feeds[sale.pk].newest_stock["stockVersion"] != 4:  # the hub has taken it in
            await asyncio.sleep(0.001)
    release.set()

    for socket in sockets:
        messages = await receive_until_version(socket, 4)
        assert versions_shown(messages) == [2, 3, 4]
    for socket in sockets:
        await socket.disconnect()


async def test_a_socket_joining_while_the_hub_loses_the_channel_layer_is_closed_and_the_next_one_is_fed(
    monkeypatch,
):
    # The receive loop fails while a socket's join is half done (its group_add in flight, as after
    # a Redis restart, when every pooled connection fails once). The hub must not end up with that
    # socket's sale attached to a channel nobody receives on: the socket is closed like the others,
    # and the next one starts a fresh channel that gets the pushes.
    sale = await sync_to_async(SaleFactory)(original_stock=1000)
    layer = get_channel_layer()
    real_receive, real_group_add = layer.receive, layer.group_add
    broken = asyncio.Event()
    first_channel = None

    async def receive(channel):
        if channel != first_channel:
            return await real_receive(channel)
        await broken.wait()
        raise ConnectionError("channel layer unreachable")

    async def group_add(group, channel):
        nonlocal first_channel
        if first_channel is None:
            first_channel = channel
            broken.set()
            for _ in range(20):  # the receive loop meets its error meanwhile
                await asyncio.sleep(0)
        await real_group_add(group, channel)

    monkeypatch.setattr(layer, "receive", receive)
    monkeypatch.setattr(layer, "group_add", group_add)

    joining = WebsocketCommunicator(application, f"/ws/sales/{sale.pk}/", headers=ORIGIN)
    await joining.connect()
    assert await joining.receive_output(timeout=WAIT) == {"type": "websocket.close", "code": 1013}
    await joining.disconnect()

    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    assert (await socket.receive_json_from(timeout=WAIT))["type"] == "snapshot"
    assert hub().channel != first_channel
    assert await group_members(realtime.sale_group(sale.pk)) >= {hub().channel}
    await send_stock(sale.pk, 5)
    assert (await socket.receive_json_from(timeout=WAIT))["currentStock"] == 995
    await socket.disconnect()


def tcp_connections_to(port: int) -> int:
    """This process's established TCP connections to `port` (Linux: /proc/self)."""
    own = set()
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{descriptor}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            own.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                remote_port, state, inode = int(fields[2].rsplit(":", 1)[1], 16), fields[3], fields[9]
                count += remote_port == port and state == "01" and inode in own  # 01: ESTABLISHED
    return count


@pytest.mark.redis
async def test_open_sockets_share_their_processs_redis_connections(settings):
    # Each consumer is a task with its own context, and Django keeps a cache object per context:
    # with a connection pool per cache object, every open socket held a Redis connection of its
    # own for as long as it lived (core/cache.py shares one client per process).
    redis_port = urlsplit(settings.REDIS_URL).port or 6379
    sale = await sync_to_async(SaleFactory)()
    first = await open_socket(f"/ws/sales/{sale.pk}/")
    await first.receive_json_from()
    before = tcp_connections_to(redis_port)

    sockets = [await open_socket(f"/ws/sales/{sale.pk}/") for _ in range(30)]
    for socket in sockets:
        assert (await socket.receive_json_from())["type"] == "snapshot"
    with_30_more = tcp_connections_to(redis_port)

    assert with_30_more - before <= 2  # a pool may open one for a call that overlapped another
    for socket in [first, *sockets]:
        await socket.disconnect()
