"""The waiting room under its real driver and through faults (issue 22, "Nothing is lost"): the sale
clock as a process of its own admits at the sale's rate, a Redis restarted empty loses no place, a
killed leading clock hands admission to the standby without a gap or a second admission, and a sold
out sale closes the line for everyone.

Rates are read from the database, not from the test's own clock: every admission step writes its
places' `admittedUntil` as its moment plus the sale's `admissionSeconds`, so the steps and their
moments can be recovered exactly, however late the test happened to look.
"""

import math
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta

import httpx
import pytest
from django.db import connection
from django.db.models import Max
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from harness.faults import ServerProcess, manage, redis_server, server_process, wait_for
from sales import queue, services
from sales.models import FlashSale, Purchase, QueuePlace
from tests.factories import SaleFactory, TokenFactory, hashed_password
from tests.invariants import assert_invariant
from tests.test_faults_restart import ClockProcess

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

PURCHASE = "/api/v1/flashsales/purchase"
LEADING = "sale clock: leading"
STANDING_BY = "sale clock: standing by (another host's clock announces)"


def queue_path(sale_id: int) -> str:
    return f"/api/v1/flashsales/{sale_id}/queue"


def queue_url(base_url: str, sale_id: int) -> str:
    return f"{base_url}{queue_path(sale_id)}"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def join(base_url: str, token: str, sale_id: int) -> httpx.Response:
    return httpx.post(queue_url(base_url, sale_id), headers=auth(token), timeout=30)


def place(base_url: str, token: str, sale_id: int) -> httpx.Response:
    return httpx.get(queue_url(base_url, sale_id), headers=auth(token), timeout=30)


def buy(base_url: str, token: str, sale_id: int, quantity: int = 1) -> httpx.Response:
    return httpx.post(
        f"{base_url}{PURCHASE}", json={"saleId": sale_id, "quantity": quantity}, headers=auth(token), timeout=30
    )


def unnumbered_line(sale: FlashSale, size: int) -> list[User]:
    """`size` buyers who took places after the start, in id order, for the clock to number."""
    users = User.objects.bulk_create(
        [
            User(name=f"In line {n}", email=f"line-{sale.pk}-{n}@example.com", password=hashed_password())
            for n in range(size)
        ]
    )
    QueuePlace.objects.bulk_create([QueuePlace(sale=sale, user=user) for user in users])
    return users


def admitted_through(sale_id: int) -> int:
    return FlashSale.objects.values_list("admitted_through", flat=True).get(pk=sale_id)


def admissions(sale_id: int) -> dict[int, datetime]:
    """Each admitted place's admittedUntil, by position."""
    return dict(
        QueuePlace.objects.filter(sale_id=sale_id, admitted_until__isnull=False).values_list(
            "position", "admitted_until"
        )
    )


def admission_steps(sale: FlashSale) -> list[tuple[datetime, int]]:
    """Every admission step the clock took, in order: its moment and the position it admitted through
    (the places of one step share their admittedUntil, the step's moment plus admissionSeconds)."""
    lease = timedelta(seconds=sale.admission_seconds)
    steps = (
        QueuePlace.objects.filter(sale=sale, admitted_until__isnull=False)
        .values("admitted_until")
        .annotate(through=Max("position"))
        .order_by("admitted_until")
    )
    return [(step["admitted_until"] - lease, step["through"]) for step in steps]


def owed_by_the_rate(sale: FlashSale, moment: datetime) -> float:
    """How many places `admitPerSecond` owes the line between the draw and `moment`."""
    return (moment - sale.queue_drawn_at).total_seconds() * sale.admit_per_second


@contextmanager
def clock_and_server(**env: str) -> Iterator[tuple[ClockProcess, ServerProcess]]:
    """A sale clock and a Daphne server on the same settings, booting side by side."""
    clock = ClockProcess(**env)
    try:
        with server_process(**env) as server:
            wait_for(lambda: clock.count(LEADING), 30, "the clock to lead")
            yield clock, server
    finally:
        clock.stop()


# --- the rate ---------------------------------------------------------------------------------


def test_a_real_sale_clock_admits_at_the_sales_rate_within_ten_percent_over_ten_seconds():
    sale = SaleFactory(waiting_room=True, admit_per_second=20, admission_seconds=300, original_stock=1000)
    unnumbered_line(sale, 300)  # more than 10 s of outflow: the line never holds admission back

    clock = ClockProcess()
    try:
        wait_for(lambda: clock.count(LEADING), 30, "the clock to lead")
        wait_for(lambda: FlashSale.objects.get(pk=sale.pk).queue_drawn_at, 10, "the clock to number the line")
        first_step = wait_for(lambda: admission_steps(sale)[:1], 10, "the first admission")[0][0]
        wait_for(
            lambda: admission_steps(sale)[-1][0] - first_step >= timedelta(seconds=10),
            30,
            "ten seconds of admission",
            interval=0.5,
        )
    finally:
        clock.stop()

    sale.refresh_from_db()
    steps = admission_steps(sale)
    start_moment, start_through = steps[0]
    end_moment, end_through = next(step for step in steps if step[0] - start_moment >= timedelta(seconds=10))
    seconds = (end_moment - start_moment).total_seconds()
    expected = seconds * sale.admit_per_second
    assert abs((end_through - start_through) - expected) <= 0.1 * expected, (seconds, end_through - start_through)
    # In order, each place once: admission is one contiguous run from the front of the line.
    assert sorted(admissions(sale.pk)) == list(range(1, sale.admitted_through + 1))
    assert Counter(clock.lines)[LEADING] == 1


# --- failover -----------------------------------------------------------------------------------


def test_a_killed_leading_clock_hands_admission_over_with_no_gap_no_second_admission_and_never_past_the_stock():
    rate, stock = 10, 60
    # Starts once both clocks run: the first must not admit the whole stock while the second boots.
    sale = SaleFactory(
        waiting_room=True,
        admit_per_second=rate,
        admission_seconds=300,
        original_stock=stock,
        start_time=timezone.now() + timedelta(hours=1),
        end_time=timezone.now() + timedelta(hours=2),
    )
    unnumbered_line(sale, 100)
    clocks: list[ClockProcess] = []
    seen: dict[int, datetime] = {}  # each place's admittedUntil as first seen

    def watch_admissions() -> int:
        through = admitted_through(sale.pk)
        # Never more admitted than the stock can serve (nobody buys here: every admitted place counts).
        assert through <= stock and queue.admitted_not_bought(sale.pk, moment=timezone.now()) <= stock
        for position, until in admissions(sale.pk).items():
            assert seen.setdefault(position, until) == until, f"place {position} was admitted a second time"
        return through

    try:
        clocks.append(ClockProcess())
        wait_for(lambda: clocks[0].count(LEADING), 30, "the first clock to lead")
        clocks.append(ClockProcess())
        wait_for(lambda: clocks[1].count(STANDING_BY), 30, "the second clock to stand by")
        leader, standby = clocks
        FlashSale.objects.filter(pk=sale.pk).update(start_time=timezone.now())

        wait_for(lambda: watch_admissions() >= rate, 15, "admission under the first clock", interval=0.05)
        leader.process.send_signal(signal.SIGKILL)
        leader.process.wait(timeout=10)
        killed_at, through_at_kill = timezone.now(), watch_admissions()
        assert through_at_kill < stock  # the standby has admission left to do

        wait_for(lambda: standby.count(LEADING), 15, "the standby to take over")
        wait_for(lambda: watch_admissions() == stock, 30, "admission up to the stock", interval=0.05)
        # The stock holds admission at its size while the new leader ticks on.
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            assert watch_admissions() == stock
            time.sleep(0.05)
        assert standby.process.poll() is None
    finally:
        for clock in clocks:
            clock.stop()

    sale.refresh_from_db()
    # No gap: exactly the first `stock` places, each admitted once and never again.
    assert admissions(sale.pk) == seen
    assert sorted(seen) == list(range(1, stock + 1))
    steps = admission_steps(sale)
    assert any(moment > killed_at for moment, _ in steps), "no admission after the leader was killed"
    # Never ahead of the rate, across the handover: no second clock's share, no burst past what the
    # rate owed since the draw (a step keeps the fraction of a place it did not admit: one at most).
    for moment, through in steps:
        assert through <= math.floor(owed_by_the_rate(sale, moment)) + 1, (moment, through)
    # And at the rate under the new leader, until the stock held admission back.
    (resumed, resumed_through), *_, (last, last_through) = [
        step for step in steps if step[0] > killed_at and step[1] < stock
    ]
    expected = (last - resumed).total_seconds() * rate
    assert abs((last_through - resumed_through) - expected) <= max(2, 0.1 * expected), steps


# --- Redis restarted empty --------------------------------------------------------------------


def test_redis_restarted_empty_loses_no_place_and_admission_and_purchases_go_on():
    # The stock admits the first ten and holds admission there until the restart is over; the
    # restock after it lets admission go on.
    sale = SaleFactory(waiting_room=True, admit_per_second=10, admission_seconds=300, original_stock=10)
    tokens = [TokenFactory().key for _ in range(30)]

    with redis_server() as redis:
        with clock_and_server(REDIS_URL=redis.url, CACHE_RETRY_SECONDS="1") as (clock, server):
            joined = [join(server.base_url, token, sale.pk) for token in tokens]
            assert [response.status_code for response in joined] == [201] * len(tokens)

            def positions() -> dict[str, int | None]:
                return {token: place(server.base_url, token, sale.pk).json()["data"]["position"] for token in tokens}

            before = wait_for(lambda: (found := positions()) and None not in found.values() and found, 15, "numbering")
            assert sorted(before.values()) == list(range(1, len(tokens) + 1))
            wait_for(lambda: admitted_through(sale.pk) == 10, 15, "admission up to the stock")
            first = next(token for token, position in before.items() if position == 1)
            assert buy(server.base_url, first, sale.pk).status_code == 201

            redis.stop()
            redis.start()  # empty: it saves nothing
            restarted_at = timezone.now()
            assert redis.answers()

            # Every place answers as before, to a read and to a repeated join.
            reads = {token: place(server.base_url, token, sale.pk) for token in tokens}
            assert {token: read.status_code for token, read in reads.items()} == dict.fromkeys(tokens, 200)
            assert {token: read.json()["data"]["position"] for token, read in reads.items()} == before
            assert Counter(read.json()["data"]["status"] for read in reads.values()) == {"admitted": 10, "waiting": 20}
            rejoined = [join(server.base_url, token, sale.pk) for token in tokens]
            assert [response.status_code for response in rejoined] == [200] * len(tokens)
            assert [response.json()["data"]["position"] for response in rejoined] == [before[t] for t in tokens]
            newcomer = TokenFactory().key
            assert join(server.base_url, newcomer, sale.pk).status_code == 201
            assert admitted_through(sale.pk) == 10

            # Admission goes on from where it was, to the end of the line, once there is stock for it.
            services.add_units(sale_id=sale.pk, units=30)
            wait_for(lambda: admitted_through(sale.pk) == len(tokens) + 1, 30, "admission of the whole line")
            statuses = {token: place(server.base_url, token, sale.pk).json()["data"]["status"] for token in tokens}
            assert set(statuses.values()) == {"admitted"}, statuses
            bought = [buy(server.base_url, token, sale.pk) for token in tokens if token != first]
            assert [response.status_code for response in bought] == [201] * (len(tokens) - 1)
            assert clock.process.poll() is None
            assert server.alive

    steps = admission_steps(sale)
    assert max(through for moment, through in steps if moment < restarted_at) == 10
    assert min(through for moment, through in steps if moment > restarted_at) > 10
    places = QueuePlace.objects.filter(sale=sale)
    assert places.count() == len(tokens) + 1  # one place each, none taken twice
    assert sorted(admissions(sale.pk)) == list(range(1, len(tokens) + 2))
    buyers = list(Purchase.objects.filter(sale=sale).values_list("user__auth_token__key", flat=True))
    assert sorted(buyers) == sorted(tokens)  # one purchase per buyer in line, none lost or doubled
    assert assert_invariant(sale.pk)[1] == len(tokens)
    assert "OK: no violations" in manage("auditsales")


# --- sell-out ---------------------------------------------------------------------------------


def test_a_sold_out_sale_closes_the_line_for_everyone_and_refuses_joins_and_still_admitted_buyers(settings):
    settings.RATELIMIT_ENABLE = False
    # Six units, each admitted buyer asks for two: three buy, three admitted buyers are left over.
    stock = 6
    sale = SaleFactory(waiting_room=True, admit_per_second=50, admission_seconds=300, original_stock=stock)
    tokens = [TokenFactory().key for _ in range(20)]

    def api(token: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return client

    def read(token: str) -> dict:
        answer = api(token).get(queue_path(sale.pk))
        assert answer.status_code == 200, answer.json()
        return answer.json()["data"]

    def buy_two(token: str) -> tuple[int, str | None]:
        try:
            answer = api(token).post(PURCHASE, {"saleId": sale.pk, "quantity": 2}, format="json")
            return answer.status_code, answer.json().get("error", {}).get("code")
        finally:
            connection.close()

    clock = ClockProcess()
    try:
        wait_for(lambda: clock.count(LEADING), 30, "the clock to lead")
        assert [api(token).post(queue_path(sale.pk)).status_code for token in tokens] == [201] * len(tokens)
        wait_for(lambda: admitted_through(sale.pk) == stock, 15, "admission up to the stock")
        places = {token: read(token) for token in tokens}
        admitted = [token for token in tokens if places[token]["status"] == "admitted"]
        waiting = [token for token in tokens if places[token]["status"] == "waiting"]
        assert (len(admitted), len(waiting)) == (stock, len(tokens) - stock)

        with ThreadPoolExecutor(max_workers=stock) as pool:
            herd = list(pool.map(buy_two, admitted))
        assert Counter(herd) == {(201, None): 3, (409, "sold_out"): 3}, herd
        left_over = [token for token, outcome in zip(admitted, herd, strict=True) if outcome[0] == 409]

        # Every place left is told the line closed, whatever it was before.
        assert {token: read(token)["status"] for token in waiting + left_over} == dict.fromkeys(
            waiting + left_over, "closed"
        )
        # A newcomer cannot join; an admitted buyer whose lease still runs cannot buy.
        newcomer = TokenFactory()
        refused = api(newcomer.key).post(queue_path(sale.pk))
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "sold_out")
        assert [buy_two(token) for token in left_over] == [(409, "sold_out")] * len(left_over)
        # The clock ticks on and admits no one past the sell-out.
        time.sleep(1)
        assert admitted_through(sale.pk) == stock
        assert clock.process.poll() is None
    finally:
        clock.stop()

    assert not QueuePlace.objects.filter(sale=sale, user=newcomer.user).exists()
    assert QueuePlace.objects.filter(sale=sale).count() == len(tokens)
    assert assert_invariant(sale.pk)[1] == stock
    assert Purchase.objects.filter(sale=sale).count() == 3
