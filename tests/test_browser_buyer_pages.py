"""What a buyer sees on the live pages, in headless Chromium against a real Daphne (issue 24): the home
page never swaps the sale under the buy button unseen, the cap message says what the buyer holds, one
time zone per page, the other live and upcoming sales listed and linked, and the "You bought" message
kept true after a sell-out."""

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from harness.servers import daphne_server
from sales.models import FlashSale, Purchase
from tests.browsers import ARTIFACTS, WAIT_MS, page_in, sign_in
from tests.factories import PurchaseFactory, SaleFactory, TokenFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 1000}


@pytest.fixture(scope="module")
def server(django_db_setup):
    with daphne_server(DEBUG="true", CHANNEL_PREFIX=f"test-buyer-pages-{uuid.uuid4().hex[:8]}") as base_url:
        yield base_url


def post(server: str, path: str, token: str, body: dict | None = None) -> httpx.Response:
    return httpx.post(f"{server}{path}", json=body, headers={"Authorization": f"Token {token}"}, timeout=10)


def buy(server: str, token: str, sale_id: int, quantity: int) -> httpx.Response:
    return post(server, "/api/v1/flashsales/purchase", token, {"saleId": sale_id, "quantity": quantity})


def test_the_home_page_resets_its_buy_form_and_says_so_when_another_sale_takes_the_ended_ones_place(
    server, browser, request
):
    now = timezone.now()
    first = SaleFactory(name="Red sneakers", end_time=now + timedelta(minutes=30))
    second = SaleFactory(name="Blue sneakers", end_time=now + timedelta(hours=2))
    buyer = UserFactory(name="Grace")
    staff_token = TokenFactory(user=UserFactory(is_staff=True)).key

    with page_in(browser, request, viewport=DESKTOP) as page:
        page.goto(f"{server}/")
        expect(page.locator("#sale-name")).to_have_text("Red sneakers")
        expect(page.locator("#connection")).to_have_text("Connected", timeout=WAIT_MS)
        sign_in(page, buyer.email)
        page.fill("#quantity", "2")

        ended = post(server, f"/api/v1/flashsales/{first.pk}/end", staff_token)

        expect(page.locator("#sale-name")).to_have_text("Blue sneakers", timeout=WAIT_MS)
        expect(page.locator("#switch-notice")).to_have_text(
            "“Red sneakers” has ended. This page now shows “Blue sneakers”: check it before you buy."
        )
        expect(page.locator("#quantity")).to_have_value("")
        page.click("#buy-button")
        expect(page.locator("#message")).to_have_text(
            "You can buy 1 to 5 units at a time. Please choose a quantity in that range."
        )
        page.screenshot(path=str(ARTIFACTS / "home-page-switched-sale.png"), full_page=True)

    assert ended.status_code == 200, ended.text
    assert not Purchase.objects.exists()
    assert FlashSale.objects.get(pk=second.pk).current_stock == 200


def test_the_cap_message_says_what_the_buyer_holds_and_buy_is_disabled_at_the_cap(server, browser, request):
    sale = SaleFactory(name="Headphones", original_stock=20)
    buyer = UserFactory(name="Ada")

    with page_in(browser, request, viewport=PHONE) as page:
        page.goto(f"{server}/sales/{sale.pk}/")
        expect(page.locator("#connection")).to_have_text("Connected", timeout=WAIT_MS)
        sign_in(page, buyer.email)
        page.fill("#quantity", "2")
        page.click("#buy-button")
        expect(page.locator("#message")).to_have_text("You bought 2. 18 left.", timeout=WAIT_MS)

        page.fill("#quantity", "4")
        page.click("#buy-button")
        expect(page.locator("#message")).to_have_text("You have 2; you can buy 3 more.", timeout=WAIT_MS)
        expect(page.locator("#buy-button")).to_be_enabled()

        page.fill("#quantity", "3")
        page.click("#buy-button")
        expect(page.locator("#message")).to_have_text(
            "You bought 3. 15 left. That is the most one buyer may hold of this sale.", timeout=WAIT_MS
        )
        expect(page.locator("#buy-button")).to_be_disabled()
        expect(page.locator("#purchases li")).to_have_count(2, timeout=WAIT_MS)
        page.screenshot(path=str(ARTIFACTS / "live-sale-at-the-cap-390.png"), full_page=True)

    assert sorted(Purchase.objects.filter(sale=sale, user=buyer).values_list("quantity", flat=True)) == [2, 3]
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 15


def test_a_buyer_in_new_york_sees_the_window_and_the_feed_in_new_york_time_labelled(server, browser, request):
    start = datetime(2026, 1, 10, 14, 0, tzinfo=UTC)
    sale = SaleFactory(name="Coats", start_time=start, end_time=timezone.now() + timedelta(days=400))
    purchase = PurchaseFactory(sale=sale, quantity=2)
    new_york = ZoneInfo("America/New_York")

    with page_in(browser, request, timezone_id="America/New_York") as page:
        page.goto(f"{server}/sales/{sale.pk}/")
        expect(page.locator("#zone")).to_have_text("Times are in your time zone (America/New_York).")
        expect(page.locator("#start-time")).to_have_text("2026-01-10 09:00")
        expect(page.locator("#end-time")).to_have_text(f"{sale.end_time.astimezone(new_york):%Y-%m-%d %H:%M}")
        bought_at = purchase.created_at.astimezone(new_york)
        expect(page.locator("#purchases time").first).to_have_text(f"{bought_at:%H:%M:%S}")
        # No time on the page is still in UTC.
        assert "UTC" not in page.locator("main").inner_text()

    assert Purchase.objects.filter(sale=sale).count() == 1


def test_the_home_page_lists_the_other_live_and_upcoming_sales_with_countdowns_and_links(server, browser, request):
    now = timezone.now()
    SaleFactory(name="Featured", end_time=now + timedelta(minutes=20))
    also_live = SaleFactory(name="Also live", end_time=now + timedelta(hours=3))
    soon = SaleFactory(name="Soon", start_time=now + timedelta(minutes=30), end_time=now + timedelta(hours=1))
    later = SaleFactory(name="Later", start_time=now + timedelta(hours=5), end_time=now + timedelta(hours=6))
    SaleFactory(name="Over", start_time=now - timedelta(hours=3), end_time=now - timedelta(hours=2))

    for viewport, name in ((DESKTOP, "home-page-1280.png"), (PHONE, "home-page-390.png")):
        with page_in(browser, request, viewport=viewport) as page:
            page.goto(f"{server}/")
            expect(page.locator("#sale-name")).to_have_text("Featured")
            # Overlapping live sales: the shown one links to the others, which a phone shows further down.
            expect(page.locator("#also-live")).to_have_text("1 other sale is live")
            items = page.locator("#others li")
            expect(items.locator("a")).to_have_text(["Also live", "Soon", "Later"])
            expect(items.locator(".badge")).to_have_text(["Live", "Starts soon", "Upcoming"])
            expect(items.nth(0).locator(".other-when")).to_have_text(re.compile(r"^Ends in 0?2:\d\d:\d\d$"))
            expect(items.nth(1).locator(".other-when")).to_have_text(re.compile(r"^Starts in (00:)?(29|30):\d\d \("))
            page.screenshot(path=str(ARTIFACTS / name), full_page=True)
            page.click("text=Soon")
            expect(page).to_have_url(f"{server}/sales/{soon.pk}/")
            expect(page.locator("#status")).to_have_text("Starts soon")

    assert {also_live.pk, later.pk} <= set(FlashSale.objects.values_list("pk", flat=True))


def test_a_sale_that_sells_out_points_to_the_next_one(server, browser, request):
    sale = SaleFactory(name="Watches", original_stock=2)
    upcoming = SaleFactory(name="Rings", start_time=timezone.now() + timedelta(hours=2))
    token = TokenFactory().key

    with page_in(browser, request) as page:
        page.goto(f"{server}/sales/{sale.pk}/")
        expect(page.locator("#connection")).to_have_text("Connected", timeout=WAIT_MS)
        expect(page.locator("#next")).to_be_hidden()

        assert buy(server, token, sale.pk, 2).status_code == 201

        expect(page.locator("#status")).to_have_text("Sold out", timeout=WAIT_MS)
        expect(page.locator("#next")).to_be_visible()
        expect(page.locator("#next-link")).to_have_text("Rings")
        expect(page.locator("#next-link")).to_have_attribute("href", f"/sales/{upcoming.pk}/")

    assert FlashSale.objects.get(pk=sale.pk).current_stock == 0


def test_a_paused_sale_with_its_own_limits_shows_paused_and_checks_its_limits(server, browser, request):
    # The snapshot's `paused`, `maxPerBuyer` and `maxPerPurchase` as the server sends them once sales
    # have them; the socket is played by the test so that the page reads exactly this snapshot.
    sale = SaleFactory(name="Scarves", original_stock=30)
    buyer = UserFactory(name="Noor")
    snapshot = {
        "type": "snapshot",
        "saleId": sale.pk,
        "name": "Scarves",
        "status": "active",
        "startTime": sale.start_time.isoformat(),
        "endTime": sale.end_time.isoformat(),
        "originalStock": 30,
        "currentStock": 30,
        "version": sale.version + 1,
        "paused": True,
        "maxPerBuyer": 3,
        "maxPerPurchase": 2,
    }

    with page_in(browser, request) as page:
        sockets = []

        def play(socket):
            sockets.append(socket)
            socket.send(json.dumps(snapshot))

        page.route_web_socket(re.compile(r"/ws/sales/"), play)
        page.goto(f"{server}/sales/{sale.pk}/")
        sign_in(page, buyer.email)
        expect(page.locator("#status")).to_have_text("Paused", timeout=WAIT_MS)
        expect(page.locator("#countdown")).to_have_text(re.compile(r"^Paused by the shop\."))
        expect(page.locator("#buy-button")).to_be_disabled()

        sockets[0].send(json.dumps({**snapshot, "paused": False, "version": sale.version + 2}))
        expect(page.locator("#status")).to_have_text("Live", timeout=WAIT_MS)
        expect(page.locator("#buy-button")).to_be_enabled()
        page.fill("#quantity", "3")
        page.click("#buy-button")
        expect(page.locator("#message")).to_have_text(
            "You can buy 1 to 2 units at a time. Please choose a quantity in that range."
        )

    assert not Purchase.objects.exists()
