"""The live page of a sale with a waiting room in headless Chromium against a real Daphne (issue 22):
two buyers join the line before the start, the sale clock draws their order and lets them in one at a
time, and each sees their place, then their turn with its countdown, buys in it and sees the outcome;
a buyer whose turn ran out is told so by the purchase's refusal."""

import json
import re
import subprocess
import sys
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from harness.servers import PROJECT_DIR, daphne_server, server_env, stop
from live.management.commands.runsaleclock import Command as SaleClock
from live.queue_news import LineNews
from sales import services
from sales.models import FlashSale, Purchase, QueuePlace
from tests.browsers import WAIT_MS, page_in
from tests.factories import PASSWORD, SaleFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

YOUR_TURN = re.compile(r"^Your turn: [12]:\d\d left to buy$")
JOIN = "Join the line to buy."
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(django_db_setup):
    # DEBUG on: static files straight from the apps' folders. The channel prefix is the tests' own,
    # so the pushes of the sale clock's tick run in this process reach the server's sockets.
    with daphne_server(DEBUG="true") as base_url:
        yield base_url


class SteppedClock:
    """The sale clock's tick (what `runsaleclock` runs every half second), stepped by the test: which
    buyer is let in first is then the test's to check, not a race with a clock running beside it."""

    def __init__(self):
        self.command = SaleClock()
        self.since = timezone.now()

    def tick(self) -> None:
        self.since = self.command.tick(self.since)

    def admit_one_second(self, sale) -> None:
        """A tick one second after admission last advanced: admitPerSecond places are let in."""
        FlashSale.objects.filter(pk=sale.pk).update(admitted_at=timezone.now() - timedelta(seconds=1.2))
        # As a second later: the clock reads each line at most once a second to announce it.
        self.command.line_news = LineNews()
        self.tick()


@contextmanager
def running_sale_clock():
    """`manage.py runsaleclock` on the test database, as ./scripts/serve runs it."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runsaleclock", "--interval", "0.2"],
        cwd=PROJECT_DIR,
        env=server_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        stop(process)


def watch_console(page) -> list[str]:
    """The page's console errors, but the browser's own line for each refused request: a 404
    not_in_queue or a 409 purchase refusal is an answer the page reads, not a fault."""
    errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    return errors


def sign_in_to_the_line(page, email: str) -> None:
    """Sign in on the live page of a waiting-room sale: the line's card shows instead of the buy form."""
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    expect(page.locator("#signed-in")).to_be_visible(timeout=WAIT_MS)


def line_status(page):
    return page.get_by_test_id("queue-status")


def test_two_buyers_who_join_before_the_start_are_let_in_in_the_drawn_order_and_each_buys_in_their_turn(
    server, browser, request
):
    now = timezone.now()
    sale = SaleFactory(
        name="Night drop",
        waiting_room=True,
        admit_per_second=1,
        original_stock=2,
        max_per_buyer=1,
        start_time=now + timedelta(hours=1),
        queue_opens_at=now - timedelta(minutes=5),
    )
    ada, bob = UserFactory(name="Ada"), UserFactory(name="Bob")
    clock = SteppedClock()

    # Ada on a desktop, Bob on a phone.
    with page_in(browser, request) as ada_page, page_in(browser, request, viewport=PHONE) as bob_page:
        pages = {ada.pk: ada_page, bob.pk: bob_page}
        console = {ada.pk: watch_console(ada_page), bob.pk: watch_console(bob_page)}
        for user in (ada, bob):
            page = pages[user.pk]
            page.goto(f"{server}/sales/{sale.pk}/")
            expect(page.locator("#queue-note")).to_be_visible()
            sign_in_to_the_line(page, user.email)
            expect(line_status(page)).to_have_text(JOIN, timeout=WAIT_MS)
            expect(page.locator("#queue-detail")).to_contain_text("drawn at random at the start")
            expect(page.locator("#buy-form")).to_be_hidden()
            page.click("#join-button")

            expect(line_status(page)).to_have_text("You're in the line.", timeout=WAIT_MS)
            expect(page.locator("#queue-detail")).to_contain_text("The order is drawn at random when the sale starts")
            expect(page.locator("#join-button")).to_be_hidden()
        assert list(QueuePlace.objects.filter(sale=sale).values_list("pre_queue", "position")) == [(True, None)] * 2

        # Staff start the sale now (its snapshot is pushed); the clock's next tick draws the order.
        services.update_sale(sale_id=sale.pk, expected_version=sale.version, changes={}, start_now=True)
        clock.tick()
        first, second = QueuePlace.objects.filter(sale=sale).order_by("position")
        assert (first.position, second.position) == (1, 2)
        first_page, second_page = pages[first.user_id], pages[second.user_id]
        expect(line_status(first_page)).to_have_text("You're next.", timeout=WAIT_MS)
        expect(line_status(second_page)).to_have_text("1 ahead of you, less than a minute", timeout=WAIT_MS)
        # "of 2" once the line's length has reached the page (the socket's queue_advanced).
        expect(second_page.locator("#queue-detail")).to_have_text(
            re.compile(r"^Place 2 (of 2 )?in the line\. Keep this page open: it moves by itself\.$")
        )

        # One second of admission at one place a second: the first in the drawn order, not the second.
        clock.admit_one_second(sale)
        expect(line_status(first_page)).to_have_text(YOUR_TURN, timeout=WAIT_MS)
        expect(first_page.locator("#buy-button")).to_be_enabled()
        expect(line_status(second_page)).to_have_text(
            re.compile(r"^(1 ahead of you, less than a minute|You're next\.)$")
        )
        expect(second_page.locator("#buy-form")).to_be_hidden()
        first_page.click("#buy-button")
        expect(first_page.locator("#message")).to_have_text(
            "You bought 1. 1 left. That is the most one buyer may hold of this sale.", timeout=WAIT_MS
        )
        expect(line_status(first_page)).to_have_text("Your turn is done.")
        expect(line_status(second_page)).to_have_text("You're next.", timeout=WAIT_MS)
        assert list(Purchase.objects.filter(sale=sale).values_list("user_id", flat=True)) == [first.user_id]

        # The next second lets the second buyer in; they buy the last unit and the line closes.
        clock.admit_one_second(sale)
        expect(line_status(second_page)).to_have_text(YOUR_TURN, timeout=WAIT_MS)
        second_page.click("#buy-button")
        for page in (first_page, second_page):
            expect(page.get_by_test_id("stock")).to_have_text("0", timeout=WAIT_MS)
            expect(line_status(page)).to_have_text("Sold out — the line is closed.", timeout=WAIT_MS)
            expect(page.locator("#message")).to_contain_text("You bought 1. The sale is now sold out.")
            expect(page.locator("#status")).to_have_text("Sold out")
        assert console == {ada.pk: [], bob.pk: []}

    assert list(Purchase.objects.filter(sale=sale).order_by("id").values_list("user_id", flat=True)) == [
        first.user_id,
        second.user_id,
    ]
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 0


def test_a_buyer_who_joins_a_running_sale_is_let_in_by_the_sale_clock_and_told_when_the_turn_ran_out(
    server, browser, request
):
    sale = SaleFactory(name="Late drop", waiting_room=True, admit_per_second=1, original_stock=3)
    buyer = UserFactory(name="Cy")

    with running_sale_clock(), page_in(browser, request, viewport=PHONE) as page:
        console = watch_console(page)
        page.goto(f"{server}/sales/{sale.pk}/")
        sign_in_to_the_line(page, buyer.email)
        expect(line_status(page)).to_have_text(JOIN, timeout=WAIT_MS)
        expect(page.locator("#queue-detail")).to_have_text("Buyers who join now are let in in the order they joined.")
        page.click("#join-button")

        # The clock numbers the place at its next tick and lets it in within the second.
        expect(line_status(page)).to_have_text(YOUR_TURN, timeout=WAIT_MS)
        expect(page.locator("#buy-button")).to_be_enabled()
        # The turn runs out while the page still offers the buy button: the purchase's refusal says so.
        QueuePlace.objects.filter(sale=sale, user=buyer).update(admitted_until=timezone.now() - timedelta(seconds=1))
        page.click("#buy-button")

        expect(line_status(page)).to_have_text("Your turn to buy ran out.", timeout=WAIT_MS)
        expect(page.locator("#buy-form")).to_be_hidden()
        expect(page.locator("#join-button")).to_be_hidden()
        expect(page.get_by_test_id("stock")).to_have_text("3")
        assert console == []

    assert not Purchase.objects.filter(sale=sale).exists()
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 3


def test_the_page_moves_the_place_with_the_sockets_queue_messages_and_reads_its_turn_when_it_comes(
    server, browser, request
):
    sale = SaleFactory(name="Pushed drop", waiting_room=True, admit_per_second=10, original_stock=5)
    buyer = UserFactory(name="Dee")
    FlashSale.objects.filter(pk=sale.pk).update(queue_drawn_at=timezone.now())
    place = QueuePlace.objects.create(sale=sale, user=buyer, joined_at=timezone.now(), position=25)
    sockets = []

    with page_in(browser, request) as page:
        console = watch_console(page)
        # The socket is the test's: it says what the server's queue messages will say.
        page.route_web_socket("**/ws/**", lambda socket: sockets.append(socket))
        page.goto(f"{server}/sales/{sale.pk}/")
        sign_in_to_the_line(page, buyer.email)
        expect(line_status(page)).to_have_text("24 ahead of you, less than a minute", timeout=WAIT_MS)

        def push(message_type: str, **fields) -> None:
            sockets[-1].send(json.dumps({"type": message_type, "saleId": sale.pk, **fields}))

        push("queue_advanced", admittedThrough=10, admitPerSecond=1, queueLength=1234)
        expect(line_status(page)).to_have_text("14 ahead of you, less than a minute")
        expect(page.locator("#queue-detail")).to_have_text(
            "Place 25 of 1,234 in the line. Keep this page open: it moves by itself."
        )
        push("queue_advanced", admittedThrough=9, admitPerSecond=1, queueLength=1234)  # late: never back
        push("queue_advanced", admittedThrough=1, admitPerSecond=0, queueLength=1234)  # nonsense rate: kept
        expect(line_status(page)).to_have_text("14 ahead of you, less than a minute")

        # The clock admits the place; the push says so and the page reads until when from the API.
        admitted_until = timezone.now() + timedelta(seconds=90)
        FlashSale.objects.filter(pk=sale.pk).update(admitted_through=25)
        QueuePlace.objects.filter(pk=place.pk).update(admitted_until=admitted_until)
        push("queue_advanced", admittedThrough=25, admitPerSecond=1, queueLength=1234)
        expect(line_status(page)).to_have_text(re.compile(r"^Your turn: 1:[23]\d left to buy$"), timeout=WAIT_MS)
        expect(page.locator("#buy-button")).to_be_enabled()

        push("queue_closed")
        expect(line_status(page)).to_have_text(re.compile(r"the line is closed\.$"))
        expect(page.locator("#buy-form")).to_be_hidden()
        assert console == []


def test_a_waiting_page_reads_its_place_only_while_its_socket_is_away(server, browser, request):
    sale = SaleFactory(name="Quiet drop", waiting_room=True, original_stock=5)
    buyer = UserFactory(name="Eve")
    FlashSale.objects.filter(pk=sale.pk).update(queue_drawn_at=timezone.now())
    QueuePlace.objects.create(sale=sale, user=buyer, joined_at=timezone.now(), position=25)
    sockets, reads = [], []

    with page_in(browser, request) as page:
        page.route_web_socket("**/ws/**", lambda socket: sockets.append(socket))
        page.on("request", lambda r: reads.append(r.url) if r.method == "GET" and r.url.endswith("/queue") else None)
        page.goto(f"{server}/sales/{sale.pk}/")
        sign_in_to_the_line(page, buyer.email)
        expect(line_status(page)).to_have_text("24 ahead of you, less than a minute", timeout=WAIT_MS)
        expect(page.locator("#connection")).to_have_text("Connected")
        first_reads = len(reads)

        # Longer than the fallback's interval: the connected socket tells the line, so no read.
        page.wait_for_timeout(7000)
        assert len(reads) == first_reads

        sockets[-1].close()
        expect(page.locator("#connection")).not_to_have_text("Connected")
        page.wait_for_timeout(6000)
        assert len(reads) > first_reads
