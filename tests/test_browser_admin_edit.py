"""Staff edit a live sale in the admin, in headless Chromium against a real Daphne, while buyers buy:
the edit is saved (a purchase is not a staff edit) and every purchase stays."""

import threading
import uuid
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import expect

from harness.servers import daphne_server
from sales.models import FlashSale, Purchase
from tests.browsers import WAIT_MS, page_in
from tests.factories import PASSWORD, SaleFactory, TokenFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 1000}
BUY_EVERY_SECONDS = 0.1


@pytest.fixture(scope="module")
def server(django_db_setup):
    with daphne_server(
        DEBUG="true",
        CHANNEL_PREFIX=f"test-admin-edit-{uuid.uuid4().hex[:8]}",
        RATELIMIT_ENABLE="false",
        MAX_UNITS_PER_USER="100000",
    ) as base_url:
        yield base_url


class Buyer(threading.Thread):
    """Buys one unit every BUY_EVERY_SECONDS through the API until stopped, as a live sale's buyers do."""

    def __init__(self, server: str, sale_id: int):
        super().__init__(daemon=True)
        self.server, self.sale_id = server, sale_id
        self.token = TokenFactory(user=UserFactory()).key
        self.stopped = threading.Event()
        self.progress = threading.Condition()
        self.bought = 0
        self.failures: list[str] = []

    def run(self):
        with httpx.Client(base_url=self.server, timeout=10) as client:
            while not self.stopped.wait(BUY_EVERY_SECONDS):
                response = client.post(
                    "/api/v1/flashsales/purchase",
                    json={"saleId": self.sale_id, "quantity": 1},
                    headers={"Authorization": f"Token {self.token}"},
                )
                with self.progress:
                    if response.status_code == 201:
                        self.bought += 1
                    else:
                        self.failures.append(response.text)
                    self.progress.notify_all()

    def wait_for_purchases(self, count: int) -> None:
        with self.progress:
            assert self.progress.wait_for(lambda: self.bought >= count, timeout=30), self.failures


def test_a_staff_edit_of_the_end_time_is_saved_while_a_buyer_buys_every_100_ms(server, browser, request):
    sale = SaleFactory(name="Live drop", original_stock=10_000)
    staff = UserFactory(is_staff=True, name="Boss")
    buyer = Buyer(server, sale.pk)
    new_end = (sale.end_time + timedelta(hours=2)).replace(microsecond=0)

    with page_in(browser, request, viewport=DESKTOP) as page:
        page.goto(f"{server}/admin/login/?next=/admin/sales/flashsale/{sale.pk}/change/")
        page.fill("#id_username", staff.email)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        expect(page.locator("#id_end_time_0")).to_be_visible(timeout=WAIT_MS)
        buyer.start()
        try:
            page.fill("#id_end_time_0", new_end.strftime("%Y-%m-%d"))
            page.fill("#id_end_time_1", new_end.strftime("%H:%M:%S"))
            buyer.wait_for_purchases(3)  # the sale sold since the form was opened
            page.click("input[name=_save]")
            expect(page.locator("ul.messagelist li.success")).to_contain_text("changed successfully", timeout=WAIT_MS)
            buyer.wait_for_purchases(buyer.bought + 1)  # and still sells after the edit
        finally:
            buyer.stopped.set()
            buyer.join(timeout=30)

    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert sale_now.end_time == new_end
    assert sale_now.version == sale.version + 1
    assert buyer.failures == []
    assert Purchase.objects.filter(sale=sale).count() == buyer.bought == sale_now.units_sold
