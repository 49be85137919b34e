"""Staff edits in headless Chromium against a real Daphne: a past start typed into a pending sale's
change form launches nothing until "start now" is ticked for that sale (issue 24, bug 2)."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from harness.servers import daphne_server
from sales.models import FlashSale
from tests.browsers import WAIT_MS, page_in, sign_in_to_admin
from tests.factories import SaleFactory
from tests.test_browser_admin import DESKTOP

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def server(django_db_setup):
    with daphne_server(DEBUG="true", CHANNEL_PREFIX=f"test-admin-staff-{uuid.uuid4().hex[:8]}") as base_url:
        yield base_url


def test_a_past_start_typed_in_the_admin_is_refused_until_start_now_is_ticked(server, browser, request):
    start = timezone.now() + timedelta(hours=2)
    sale = SaleFactory(name="Midnight drop", start_time=start, end_time=start + timedelta(hours=1))
    typo = timezone.now() - timedelta(minutes=10)

    with page_in(browser, request, viewport=DESKTOP) as page:
        sign_in_to_admin(page, server)
        page.goto(f"{server}/admin/sales/flashsale/{sale.pk}/change/")
        expect(page.locator("#id_start_now")).to_be_hidden()
        page.fill("#id_start_time_0", typo.strftime("%Y-%m-%d"))
        page.fill("#id_start_time_1", typo.strftime("%H:%M:%S"))
        page.click("input[name=_continue]")

        expect(page.locator(".errorlist")).to_contain_text("saving it would start “Midnight drop” at once")
        confirm = page.locator("#id_start_now")
        expect(confirm).to_be_visible()
        expect(page.locator("label[for=id_start_now]")).to_contain_text("Yes, start “Midnight drop” now")
        refused = FlashSale.objects.get(pk=sale.pk)
        assert (refused.start_time, refused.version, refused.status) == (sale.start_time, 1, "pending")

        confirm.check()
        page.click("input[name=_continue]")

        expect(page.locator(".messagelist .success")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#id_start_now")).to_be_hidden()

    started = FlashSale.objects.get(pk=sale.pk)
    assert started.status == "active"
    assert typo < started.start_time <= timezone.now()
    assert (started.end_time, started.version) == (sale.end_time, 2)
