"""A waiting room over WebSocket (issue 22): `queue_advanced` tells the line at most once a second
per sale, `queue_closed` reaches every socket when the sale sells out or ends, and the snapshot
carries the same fields. Both deliveries: through the channel layer (the sale clock announces;
Redis in CI) and, with REALTIME_POLL_MS set, the database feed (no Redis).

In-process with WebsocketCommunicator, so it runs on SQLite too; the same across real Daphne
processes and a real `manage.py runsaleclock` is tests/test_realtime_queue_processes.py.
"""

import asyncio
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connections
from django.utils import timezone

from accounts.models import User
from live import realtime
from live.management.commands.runsaleclock import Command as SaleClock
from sales import purchase, queue, services
from sales.models import FlashSale, QueuePlace
from tests.factories import SaleFactory, hashed_password
from tests.test_realtime import close, drain, of_type, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

WAIT = 10
LINE_FIELDS = ("admittedThrough", "admitPerSecond", "queueLength")


@database_sync_to_async
def waiting_room(*, size: int, numbered: int | None = None, drawn_seconds_ago: float = 0, **fields) -> FlashSale:
    """A live waiting-room sale with `size` places, the first `numbered` of them (all by default)
    numbered as the clock's draw `drawn_seconds_ago` left them, the rest not numbered yet."""
    sale = SaleFactory(waiting_room=True, **fields)
    numbered = size if numbered is None else numbered
    users = User.objects.bulk_create(
        User(name=f"In line {sale.pk}-{n}", email=f"line{sale.pk}-{n}@example.com", password=hashed_password())
        for n in range(size)
    )
    QueuePlace.objects.bulk_create(
        QueuePlace(sale=sale, user=user, position=n if n <= numbered else None) for n, user in enumerate(users, start=1)
    )
    FlashSale.objects.filter(pk=sale.pk).update(queue_drawn_at=timezone.now() - timedelta(seconds=drawn_seconds_ago))
    return FlashSale.objects.get(pk=sale.pk)


@database_sync_to_async
def stored(sale_id: int) -> FlashSale:
    return FlashSale.objects.get(pk=sale_id)


@database_sync_to_async
def admitted_users(sale_id: int) -> list[User]:
    places = QueuePlace.objects.filter(sale_id=sale_id, admitted_until__isnull=False).select_related("user")
    return [place.user for place in places.order_by("position")]


@database_sync_to_async
def end_in_the_past(sale_id: int) -> None:
    """The sale's end passes without a write that tells anyone (as when the clock reaches it)."""
    FlashSale.objects.filter(pk=sale_id).update(end_time=timezone.now() - timedelta(milliseconds=1))


async def receive_until(socket, kind: str) -> tuple[dict, list[dict]]:
    seen = []
    while True:
        message = await socket.receive_json_from(timeout=WAIT)
        if message["type"] == kind:
            return message, seen
        seen.append(message)


async def collect(socket, seconds: float) -> list[tuple[float, dict]]:
    """Every message for `seconds`, with the monotonic time it arrived."""
    received = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        # receive_nothing, not a receive that times out: that would cancel the application.
        if not await socket.receive_nothing(timeout=0.02, interval=0.005):
            received.append((time.monotonic(), await socket.receive_json_from()))
    return received


def in_a_thread(work, keep_going) -> asyncio.Future:
    """Run `work()` repeatedly in a thread while `keep_going()`, then close its database connection."""

    def run():
        try:
            while keep_going():
                work()
        finally:
            connections.close_all()

    return asyncio.get_running_loop().run_in_executor(None, run)


def at_most_one_a_second(arrivals: list[float]) -> bool:
    """No window of one second holds two arrivals (with a little slack for the event loop's
    scheduling of the receiving side, never for the sending side)."""
    return all(later - earlier >= 0.95 for earlier, later in zip(arrivals, arrivals[1:], strict=False))


# --- the snapshot ----------------------------------------------------------------------------


async def test_the_snapshot_of_a_waiting_room_sale_carries_its_line_and_a_plain_sale_says_it_has_none():
    sale = await waiting_room(size=7, numbered=5, admit_per_second=7)
    await sync_to_async(FlashSale.objects.filter(pk=sale.pk).update)(admitted_through=3)
    sold_out = await waiting_room(size=2, original_stock=5, current_stock=0)
    plain = await sync_to_async(SaleFactory)()

    snapshots = []
    for watched in (sale, sold_out, plain):
        socket = await open_socket(f"/ws/sales/{watched.pk}/")
        snapshots.append(await socket.receive_json_from())
        await close(socket)

    line, closed, none = snapshots
    # Five numbered and two still to number: seven places taken.
    assert {field: line[field] for field in ("waitingRoom", *LINE_FIELDS, "queueClosed")} == {
        "waitingRoom": True,
        "admittedThrough": 3,
        "admitPerSecond": 7,
        "queueLength": 7,
        "queueClosed": False,
    }
    assert (closed["queueClosed"], closed["queueLength"]) == (True, 2)
    assert none["waitingRoom"] is False
    assert not set(LINE_FIELDS) & set(none)


# --- through the channel layer: the sale clock announces ---------------------------------------


async def test_the_clock_tells_watchers_how_far_admission_reached_after_its_step():
    sale = await waiting_room(size=20, drawn_seconds_ago=2.5, admit_per_second=4, original_stock=100)
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    snapshot = await socket.receive_json_from()

    await sync_to_async(SaleClock().tick)(timezone.now())
    advanced, _ = await receive_until(socket, "queue_advanced")
    await close(socket)

    row = await stored(sale.pk)
    # 2.5 s at 4 a second: the first ten admitted by the step.
    assert row.admitted_through == 10
    assert snapshot["admittedThrough"] == 0
    assert advanced == {
        "type": "queue_advanced",
        "saleId": sale.pk,
        "admittedThrough": 10,
        "admitPerSecond": 4,
        "queueLength": 20,
    }


async def test_continuous_admission_is_told_at_most_once_a_second_and_ends_on_the_newest_figure():
    sale = await waiting_room(size=2000, drawn_seconds_ago=0.5, admit_per_second=40, original_stock=2000)
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()
    # Two clocks (as during a failover's overlap), each with its own memory of what it told:
    # together they announce up to twice a second, and the hub still writes once a second.
    clocks = [SaleClock(), SaleClock()]
    ticking = [True]

    def tick():
        for clock in clocks:
            clock.tick(timezone.now())
        time.sleep(0.1)

    ticker = in_a_thread(tick, lambda: ticking[0])
    received = await collect(socket, 3.5)
    # Staff hold admission; the clocks tick on, and the line's last figure reaches the socket.
    await sync_to_async(FlashSale.objects.filter(pk=sale.pk).update)(admission_paused=True)
    final, _ = await receive_until(socket, "queue_advanced")
    # (A step that read the sale before the pause may still admit once: its figure follows.)
    while final["admittedThrough"] < (await stored(sale.pk)).admitted_through:
        final, _ = await receive_until(socket, "queue_advanced")
    ticking[0] = False
    await ticker
    await close(socket)

    lines = [(at, message) for at, message in received if message["type"] == "queue_advanced"]
    through = [message["admittedThrough"] for _, message in lines]
    assert 3 <= len(lines) <= 4, through
    assert at_most_one_a_second([at for at, _ in lines])
    assert through == sorted(through) and len(set(through)) == len(through)
    assert {(message["admitPerSecond"], message["queueLength"]) for _, message in lines} == {(40, 2000)}
    # The newest figure is never held back: once admission stops, the last one told is the stored one.
    assert final["admittedThrough"] == (await stored(sale.pk)).admitted_through > through[-1]


async def test_the_hub_writes_a_line_at_most_once_a_second_however_many_figures_arrive():
    sale = await waiting_room(size=100, admit_per_second=30)
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()
    layer = get_channel_layer()

    async def announce():
        for through in range(1, 31):
            message = realtime.queue_advanced_message(
                sale_id=sale.pk, admitted_through=through, admit_per_second=30, queue_length=100
            )
            await layer.group_send(
                realtime.sale_group(sale.pk), {"type": realtime.SALE_EVENT, "message": {"queueAdvanced": message}}
            )
            await asyncio.sleep(0.08)

    sender = asyncio.get_running_loop().create_task(announce())
    received = await collect(socket, 4.0)
    await sender
    await close(socket)

    lines = [(at, message) for at, message in received if message["type"] == "queue_advanced"]
    through = [message["admittedThrough"] for _, message in lines]
    # 30 figures over 2.4 s: the first at once, then the newest each second, the final one last.
    assert 3 <= len(lines) <= 4, through
    assert at_most_one_a_second([at for at, _ in lines])
    assert through[0] == 1 and through[-1] == 30 and through == sorted(through)


async def test_a_sell_out_closes_the_line_for_every_socket_after_the_status():
    sale = await waiting_room(size=6, drawn_seconds_ago=5, admit_per_second=100, original_stock=2)
    await sync_to_async(queue.admit)()
    buyers = await admitted_users(sale.pk)
    sockets = [await open_socket(f"/ws/sales/{sale.pk}/") for _ in range(3)]
    for socket in sockets:
        await socket.receive_json_from()

    for buyer in buyers:
        await sync_to_async(purchase.purchase)(user=buyer, sale_id=sale.pk, quantity=1)
    told = []
    for socket in sockets:
        closed, before = await receive_until(socket, "queue_closed")
        told.append((closed, before))
    await sync_to_async(SaleClock().tick)(timezone.now())  # a closed line is not announced any more
    later = [await drain(socket) for socket in sockets]
    for socket in sockets:
        await close(socket)

    assert len(buyers) == 2
    assert (await stored(sale.pk)).current_stock == 0
    for closed, before in told:
        assert closed == {"type": "queue_closed", "saleId": sale.pk, "reason": "soldOut"}
        assert of_type(before, "status")[-1]["status"] == "completed"
    assert all(of_type(messages, "queue_advanced") == of_type(messages, "queue_closed") == [] for messages in later)


async def test_a_staff_end_and_the_clock_passing_the_end_close_the_line_for_every_socket():
    ended_by_staff = await waiting_room(size=3)
    reached_its_end = await waiting_room(size=3)
    sockets = {
        sale.pk: [await open_socket(f"/ws/sales/{sale.pk}/") for _ in range(2)]
        for sale in (ended_by_staff, reached_its_end)
    }
    for socket in [socket for pair in sockets.values() for socket in pair]:
        await socket.receive_json_from()

    await sync_to_async(services.end_sale_now)(sale_id=ended_by_staff.pk)
    await end_in_the_past(reached_its_end.pk)
    await sync_to_async(SaleClock().tick)(timezone.now() - timedelta(seconds=5))
    told = {
        sale_id: [(await receive_until(socket, "queue_closed"))[0] for socket in pair]
        for sale_id, pair in sockets.items()
    }
    for pair in sockets.values():
        for socket in pair:
            await close(socket)

    for sale_id, messages in told.items():
        assert messages == [{"type": "queue_closed", "saleId": sale_id, "reason": "ended"}] * 2


# --- without a channel layer: the database feed --------------------------------------------------


@pytest.fixture
def database_feed(settings):
    settings.REALTIME_POLL_MS = 20


@pytest.mark.usefixtures("database_feed")
async def test_the_database_feed_tells_the_line_after_an_admission_step():
    sale = await waiting_room(size=30, numbered=25, drawn_seconds_ago=2, admit_per_second=5, original_stock=100)
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()
    first, _ = await receive_until(socket, "queue_advanced")  # the feed's first read restates the line

    await sync_to_async(queue.admit)()
    advanced, _ = await receive_until(socket, "queue_advanced")
    await close(socket)

    assert (first["admittedThrough"], first["queueLength"]) == (0, 30)
    assert advanced == {
        "type": "queue_advanced",
        "saleId": sale.pk,
        "admittedThrough": 10,
        "admitPerSecond": 5,
        "queueLength": 30,
    }


@pytest.mark.usefixtures("database_feed")
async def test_the_database_feed_tells_continuous_admission_at_most_once_a_second():
    sale = await waiting_room(size=2000, drawn_seconds_ago=0.5, admit_per_second=40, original_stock=2000)
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    await socket.receive_json_from()
    admitting = [True]

    def admit():
        queue.admit()
        time.sleep(0.05)

    admitter = in_a_thread(admit, lambda: admitting[0])
    received = await collect(socket, 3.5)
    admitting[0] = False
    await admitter
    await close(socket)

    lines = [(at, message) for at, message in received if message["type"] == "queue_advanced"]
    through = [message["admittedThrough"] for _, message in lines]
    assert 3 <= len(lines) <= 4, through
    assert at_most_one_a_second([at for at, _ in lines])
    assert through == sorted(through) and through[-1] > 0


@pytest.mark.usefixtures("database_feed")
async def test_the_database_feed_closes_the_line_on_a_sell_out_and_on_the_end():
    sold = await waiting_room(size=4, drawn_seconds_ago=5, admit_per_second=100, original_stock=1)
    ending = await waiting_room(size=4)
    await sync_to_async(queue.admit)()
    [buyer] = await admitted_users(sold.pk)
    sockets = {sale.pk: [await open_socket(f"/ws/sales/{sale.pk}/") for _ in range(2)] for sale in (sold, ending)}
    for pair in sockets.values():
        for socket in pair:
            await socket.receive_json_from()
            await receive_until(socket, "queue_advanced")  # the first read: the line is open

    await sync_to_async(purchase.purchase)(user=buyer, sale_id=sold.pk, quantity=1)
    await end_in_the_past(ending.pk)
    told = {}
    for sale_id, pair in sockets.items():
        told[sale_id] = []
        for socket in pair:
            closed, before = await receive_until(socket, "queue_closed")
            told[sale_id].append((closed["reason"], of_type(before, "status")[-1]["status"]))
            await close(socket)

    assert told == {sold.pk: [("soldOut", "completed")] * 2, ending.pk: [("ended", "completed")] * 2}
