"""A waiting-room sale's change page in headless Chromium against a real Daphne: its line (in line,
admitted through, admitted and not yet bought, purchases per second) moves live while the sale clock
admits and admitted buyers buy, and staff steer admission (pause, rate) from the same page."""

import uuid
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from harness.servers import daphne_server
from live.management.commands.runsaleclock import Command as SaleClock
from sales.models import FlashSale, QueuePlace
from tests.browsers import ARTIFACTS, WAIT_MS, page_in, sign_in_to_admin
from tests.factories import SaleFactory, TokenFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def server(django_db_setup):
    # The database feed carries the pushes: the clock ticks in this test's process, not in Daphne's.
    with daphne_server(
        DEBUG="true", REALTIME_POLL_MS="50", CHANNEL_PREFIX=f"test-admin-line-{uuid.uuid4().hex[:8]}"
    ) as base_url:
        yield base_url


def test_a_waiting_rooms_line_moves_live_on_its_change_page_and_staff_pause_it(server, browser, request):
    sale = SaleFactory(name="Drop with a line", waiting_room=True, admit_per_second=3, original_stock=50)
    tokens = [TokenFactory() for _ in range(12)]
    for position, token in enumerate(tokens, start=1):
        QueuePlace.objects.create(sale=sale, user=token.user, position=position)
    drawn = FlashSale.objects.filter(pk=sale.pk)
    drawn.update(queue_drawn_at=timezone.now())  # no clock runs: only this test's tick admits
    line = "[data-waiting-room] "

    with page_in(browser, request, viewport=DESKTOP) as page:
        sign_in_to_admin(page, server)
        page.goto(f"{server}/admin/sales/flashsale/{sale.pk}/change/")
        expect(page.locator(line + ".line-length")).to_have_text("12")
        expect(page.locator(line + ".line-admitted-through")).to_have_text("0")
        expect(page.locator("[data-live-stock]")).to_have_attribute("data-state", "live", timeout=WAIT_MS)

        drawn.update(queue_drawn_at=timezone.now() - timedelta(seconds=1))
        SaleClock().tick(timezone.now())  # one second at 3 a second: the first three admitted
        expect(page.locator(line + ".line-admitted-through")).to_have_text("3", timeout=WAIT_MS)
        expect(page.locator(line + ".line-admitted-not-bought")).to_have_text("3", timeout=WAIT_MS)

        bought = httpx.post(
            f"{server}/api/v1/flashsales/purchase",
            json={"saleId": sale.pk, "quantity": 1},
            headers={"Authorization": f"Token {tokens[0].key}"},
            timeout=10,
        )
        expect(page.locator(line + ".line-admitted-not-bought")).to_have_text("2", timeout=WAIT_MS)
        expect(page.locator(line + ".line-purchase-rate")).to_have_text("0.1", timeout=WAIT_MS)
        page.screenshot(path=str(ARTIFACTS / "admin-waiting-room-live.png"), full_page=True)

        # Staff hold admission and change the rate on the same page.
        page.check("#id_admission_paused")
        page.fill("#id_admit_per_second", "5")
        page.click("input[name=_continue]")
        expect(page.locator(".messagelist .success")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator(line + ".line-admission")).to_have_text("admission paused")

    assert bought.status_code == 201, bought.text
    stored = FlashSale.objects.get(pk=sale.pk)
    assert (stored.admitted_through, stored.current_stock) == (3, 49)
    assert (stored.admission_paused, stored.admit_per_second) == (True, 5)
