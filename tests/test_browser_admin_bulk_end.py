"""The bulk "End selected sales now" in headless Chromium against a real Daphne: it asks first, listing the
sales, as the single sale's "End sale now" does (issue 24, bug 5).

A module of its own: the admin's log entry of the end needs the server's cached content types to be the
database's, and every transactional test before it in a module re-creates them under new ids."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from harness.servers import daphne_server
from sales.models import FlashSale
from tests.browsers import ARTIFACTS, WAIT_MS, page_in, sign_in_to_admin
from tests.factories import SaleFactory
from tests.test_browser_admin import DESKTOP

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def server(django_db_setup):
    with daphne_server(DEBUG="true", CHANNEL_PREFIX=f"test-admin-bulk-{uuid.uuid4().hex[:8]}") as base_url:
        yield base_url


def test_bulk_end_asks_first_then_ends_the_live_sales(server, browser, request):
    live = SaleFactory(name="Bulk live")
    quiet = SaleFactory(name="Bulk later", start_time=timezone.now() + timedelta(hours=2))

    with page_in(browser, request, viewport=DESKTOP) as page:
        sign_in_to_admin(page, server)
        page.goto(f"{server}/admin/sales/flashsale/")
        for name in ("Bulk live", "Bulk later"):
            page.locator("#result_list tbody tr", has_text=name).locator("input.action-select").check()
        page.select_option("select[name=action]", "end_now")
        page.click("button[name=index]")

        expect(page.locator("h1")).to_have_text("End the selected sales now?")
        expect(page.locator("#sales-to-end li")).to_have_count(1)
        expect(page.locator("#sales-to-end")).to_contain_text("Bulk live")
        expect(page.locator("#sales-left-alone")).to_have_text("Bulk later")
        page.screenshot(path=str(ARTIFACTS / "admin-bulk-end-confirmation.png"), full_page=True)
        assert FlashSale.objects.get(pk=live.pk).end_time > timezone.now()

        page.click("input[type=submit][value='Yes, end it now']")
        expect(page.locator(".messagelist")).to_contain_text("Ended 1 sale: Bulk live.", timeout=WAIT_MS)

    assert FlashSale.objects.get(pk=live.pk).end_time <= timezone.now()
    assert FlashSale.objects.get(pk=quiet.pk).end_time == quiet.end_time
