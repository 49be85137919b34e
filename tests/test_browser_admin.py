"""The flash sale admin in headless Chromium against a real Daphne: the list fits a 1280 px screen, and a
sale's change page shows its stock live while buyers buy through the API."""

import re
import uuid

import httpx
import pytest
from playwright.sync_api import expect

from harness.servers import daphne_server
from sales.models import FlashSale, Purchase
from tests.browsers import ARTIFACTS, WAIT_MS, page_in
from tests.factories import PASSWORD, PurchaseFactory, SaleFactory, TokenFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def server(django_db_setup):
    with daphne_server(DEBUG="true", CHANNEL_PREFIX=f"test-admin-{uuid.uuid4().hex[:8]}") as base_url:
        yield base_url


def sign_in_to_admin(page, server: str) -> None:
    staff = UserFactory(is_staff=True, name="Boss")
    page.goto(f"{server}/admin/login/?next=/admin/")
    page.fill("#id_username", staff.email)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible(timeout=WAIT_MS)


def test_the_sale_list_shows_every_column_whole_at_1280_px(server, browser, request):
    sale = SaleFactory(name="A sale with a rather long name for its column", original_stock=100_000)
    PurchaseFactory(sale=sale)
    SaleFactory(name="Second sale", original_stock=50)

    with page_in(browser, request, viewport=DESKTOP) as page:
        sign_in_to_admin(page, server)
        page.goto(f"{server}/admin/sales/flashsale/")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "admin-sale-list-1280.png"), full_page=True)

        header = page.locator("th.column-purchases")
        expect(header).to_have_text(re.compile("purchases", re.IGNORECASE))
        results = page.locator("#changelist .results")
        # Nothing of the table is scrolled out of sight or cut off at the viewport's edge.
        assert results.evaluate("e => e.scrollWidth <= e.clientWidth"), "the list scrolls sideways"
        right = header.evaluate("e => e.getBoundingClientRect().right")
        assert right <= page.evaluate("document.documentElement.clientWidth")
        assert header.evaluate("e => e.querySelector('.text').scrollWidth <= e.querySelector('.text').clientWidth")

    assert FlashSale.objects.count() == 2


def test_a_sale_change_page_shows_its_stock_live(server, browser, request):
    sale = SaleFactory(name="Live stock", original_stock=40)
    buyer_token = TokenFactory(user=UserFactory(name="Grace"))

    with page_in(browser, request, viewport=DESKTOP) as page:
        sign_in_to_admin(page, server)
        page.goto(f"{server}/admin/sales/flashsale/{sale.pk}/change/")
        stock = page.locator("[data-live-stock] .live-stock-numbers")
        expect(stock).to_have_text("40 / 40")
        expect(page.locator("[data-live-stock]")).to_have_attribute("data-state", "live", timeout=WAIT_MS)

        response = httpx.post(
            f"{server}/api/v1/flashsales/purchase",
            json={"saleId": sale.pk, "quantity": 3},
            headers={"Authorization": f"Token {buyer_token.key}"},
            timeout=10,
        )

        expect(stock).to_have_text("37 / 40", timeout=WAIT_MS)
        expect(page.locator("[data-live-stock] .live-stock-sold")).to_have_text("3 units sold", timeout=WAIT_MS)
        page.screenshot(path=str(ARTIFACTS / "admin-sale-change-live-stock.png"), full_page=True)

    assert response.status_code == 201, response.text
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 37
    assert Purchase.objects.filter(sale=sale).count() == 1
