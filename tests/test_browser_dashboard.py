"""The drop dashboard in headless Chromium against a real Daphne: a herd of purchases shows up, live, as the
right units per minute in the chart's own data, and refusals and conversion follow."""

import random
import threading
import uuid
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from django.db import connection, transaction
from django.utils import timezone
from playwright.sync_api import expect

from harness.servers import daphne_server
from sales import purchase
from sales.models import FlashSale, Purchase
from tests.browsers import ARTIFACTS, WAIT_MS, page_in, sign_in_to_admin
from tests.factories import SaleFactory, TokenFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SCREEN = {"width": 1280, "height": 1000}
HERD = 200
PACE_SECONDS = 10 / HERD  # the herd's own rhythm: 200 purchases over about 10 s

CHART_DATA = """id => {
  const chart = window.flashsaleDashboard && window.flashsaleDashboard.charts[id];
  return chart ? [Array.from(chart.data[0]), Array.from(chart.data[1])] : null;
}"""
CHART_TOTAL = f"""id => {{
  const data = ({CHART_DATA})(id);
  return data ? data[1].reduce((a, b) => a + b, 0) : -1;
}}"""


@pytest.fixture(scope="module")
def server(django_db_setup):
    with daphne_server(DEBUG="true", CHANNEL_PREFIX=f"test-dashboard-{uuid.uuid4().hex[:8]}") as base_url:
        yield base_url


def watch_violations(page) -> list[str]:
    """Every CSP violation the page reports (Chromium logs each to the console), as tests/test_browser_csp.py."""
    violations: list[str] = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return violations


def herd(sale_id: int, buyers, moments, done: threading.Event, errors: list) -> None:
    """Buy one unit per buyer through the purchase rule, each purchase stamped with its moment in the
    same transaction (so no poll ever sees it in the minute it was really made)."""
    try:
        for buyer, moment in zip(buyers, moments, strict=True):
            with transaction.atomic():
                result = purchase.purchase(user=buyer, sale_id=sale_id, quantity=1)
                Purchase.objects.filter(pk=result.purchase_id).update(created_at=moment)
            done.wait(PACE_SECONDS)
    except Exception as error:  # reported by the test, not lost in the thread
        errors.append(error)
    finally:
        done.set()
        connection.close()


def test_a_herd_shows_up_live_as_the_right_units_per_minute_in_the_chart(server, browser, request):
    first_minute = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=4)
    sale = SaleFactory(name="Sneaker drop", start_time=first_minute, original_stock=HERD)
    SaleFactory(name="Next drop", start_time=timezone.now() + timedelta(minutes=30))
    # The herd's purchases spread over the sale's first four minutes, in order.
    shares = [50, 80, 20, 50]
    chance = random.Random(24)
    moments = sorted(
        first_minute + timedelta(minutes=minute, seconds=chance.uniform(0, 59.9))
        for minute, share in enumerate(shares)
        for _ in range(share)
    )
    expected = {int((first_minute + timedelta(minutes=m)).timestamp()): share for m, share in enumerate(shares)}
    buyers = UserFactory.create_batch(HERD)
    late_token = TokenFactory(user=UserFactory(name="Late"))

    with page_in(browser, request, viewport=SCREEN) as page:
        violations = watch_violations(page)
        sign_in_to_admin(page, server)
        page.goto(f"{server}/admin/")
        page.screenshot(path=str(ARTIFACTS / "admin-index-dashboard-link-1280.png"))
        page.click("#drop-dashboard-link")
        expect(page.locator(f'.drop-panel[data-sale-id="{sale.pk}"]')).to_be_visible()
        assert page.evaluate(CHART_TOTAL, sale.pk) == 0
        expect(page.locator(f'.drop-row[data-sale-id="{sale.pk}"] .drop-countdown')).to_contain_text("ends in")
        expect(page.locator(".drop-row", has_text="Next drop").locator(".drop-countdown")).to_contain_text("starts in")

        done, errors = threading.Event(), []
        thread = threading.Thread(target=herd, args=(sale.pk, buyers, moments, done, errors))
        thread.start()
        try:
            # Live: the chart takes purchases while the herd is still buying.
            page.wait_for_function(
                f"() => {{ const t = ({CHART_TOTAL})({sale.pk}); return t > 0 && t < {HERD}; }}", timeout=WAIT_MS
            )
            assert not done.is_set()
            page.screenshot(path=str(ARTIFACTS / "dashboard-during-herd-1280.png"), full_page=True)
        finally:
            thread.join()
        assert errors == []

        page.wait_for_function(f"() => ({CHART_TOTAL})({sale.pk}) === {HERD}", timeout=WAIT_MS)
        minute_starts, units = page.evaluate(CHART_DATA, sale.pk)
        charted = {minute: count for minute, count in zip(minute_starts, units, strict=True) if count}
        assert charted == expected
        assert minute_starts[:4] == sorted(expected)  # quiet minutes after the herd are charted as 0
        assert all(count == 0 for count in units[4:])

        for _ in range(3):
            refused = httpx.post(
                f"{server}/api/v1/flashsales/purchase",
                json={"saleId": sale.pk, "quantity": 1},
                headers={"Authorization": f"Token {late_token.key}"},
                timeout=10,
            )
            assert refused.status_code == 409 and refused.json()["error"]["code"] == "sold_out"
        panel = page.locator(f'.drop-panel[data-sale-id="{sale.pk}"]')
        expect(panel.locator('tr[data-code="sold_out"] td')).to_have_text("3", timeout=WAIT_MS)
        expect(panel.locator(".drop-figure-conversion dd")).to_have_text("99.5% (200 of 201 buyers)")
        expect(panel.locator(".drop-figure-peak dd")).to_have_text("80 / min")
        time_to_sell_out = moments[-1] - sale.start_time
        expect(panel.locator(".drop-figure-timeToSellOut dd")).to_contain_text(
            f"{int(time_to_sell_out.total_seconds()) // 60}m"
        )
        expect(panel.locator(".drop-badge")).to_have_text("Sold out")
        page.screenshot(path=str(ARTIFACTS / "dashboard-after-herd-1280.png"), full_page=True)
        assert violations == []

    assert FlashSale.objects.get(pk=sale.pk).current_stock == 0
    assert Counter(
        int(moment.replace(second=0, microsecond=0).timestamp())
        for moment in Purchase.objects.filter(sale=sale).values_list("created_at", flat=True)
    ) == Counter(expected)


def test_a_finished_sale_shows_its_whole_window_and_time_to_sell_out(server, browser, request):
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=50)
    sale = SaleFactory(name="Yesterday's drop", start_time=start, end_time=start + timedelta(minutes=30))
    for minute, count in [(0, 7), (1, 12), (2, 5)]:
        for second in range(count):
            Purchase.objects.create(
                user=UserFactory(), sale=sale, quantity=1, created_at=start + timedelta(minutes=minute, seconds=second)
            )
    FlashSale.objects.filter(pk=sale.pk).update(original_stock=24, current_stock=0)

    with page_in(browser, request, viewport=SCREEN) as page:
        sign_in_to_admin(page, server)
        page.goto(f"{server}/admin/dashboard/")
        page.click(f'.drop-row[data-sale-id="{sale.pk}"] a')
        panel = page.locator(f'.drop-panel[data-sale-id="{sale.pk}"]')
        expect(panel.locator(".drop-badge")).to_have_text("Sold out")
        expect(panel.locator(".drop-figure-timeToSellOut dd")).to_contain_text("2m 04s")
        minute_starts, units = page.evaluate(CHART_DATA, sale.pk)
        page.screenshot(path=str(ARTIFACTS / "dashboard-finished-sale-1280.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        expect(panel.locator(".drop-badge")).to_have_text("Sold out")
        page.screenshot(path=str(ARTIFACTS / "dashboard-finished-sale-390.png"), full_page=True)

    assert len(minute_starts) == 30  # the whole window, and not the minute it ended at
    assert units[:4] == [7, 12, 5, 0] and sum(units) == 24
    assert Purchase.objects.filter(sale=sale).count() == 24
