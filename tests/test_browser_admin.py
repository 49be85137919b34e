"""The flash sale admin in headless Chromium against a real Daphne: the list fits a 1280 px screen, and a
sale's change page shows its stock live while buyers buy through the API."""

import re
import uuid

import httpx
import pytest
from playwright.sync_api import expect

from harness.servers import daphne_server
from sales.models import FlashSale, Purchase
from tests.browsers import ARTIFACTS, WAIT_MS, page_in, sign_in_to_admin
from tests.factories import PurchaseFactory, SaleFactory, TokenFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def server(django_db_setup):
    with daphne_server(DEBUG="true", CHANNEL_PREFIX=f"test-admin-{uuid.uuid4().hex[:8]}") as base_url:
        yield base_url


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


def buy_through_api(server: str, token: str, sale_id: int, quantity: int) -> httpx.Response:
    return httpx.post(
        f"{server}/api/v1/flashsales/purchase",
        json={"saleId": sale_id, "quantity": quantity},
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    )


def test_every_number_on_a_sale_change_page_moves_on_a_purchase(server, browser, request):
    sale = SaleFactory(name="All live", original_stock=40)
    buyer_token = TokenFactory(user=UserFactory(name="Grace", email="grace@example.com"))

    with page_in(browser, request, viewport={"width": 1280, "height": 1000}) as page:
        sign_in_to_admin(page, server)
        page.goto(f"{server}/admin/sales/flashsale/{sale.pk}/change/")
        expect(page.locator("[data-live-purchases] tbody")).to_have_text("None yet.")
        expect(page.locator(".live-purchase-count")).to_have_text("0 purchases")
        version = page.locator(".field-version .readonly")
        expect(version).to_have_text(str(sale.version))
        expect(page.locator("[data-live-stock]")).to_have_attribute("data-state", "live", timeout=WAIT_MS)

        response = buy_through_api(server, buyer_token.key, sale.pk, 3)

        expect(page.locator("[data-live-stock] .live-stock-numbers")).to_have_text("37 / 40", timeout=WAIT_MS)
        expect(page.locator(".live-purchase-count")).to_have_text("1 purchase", timeout=WAIT_MS)
        rows = page.locator("[data-live-purchases] tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.locator(".field-buyer")).to_have_text("grace@example.com (Grace)")
        expect(rows.locator(".field-quantity")).to_have_text("3")
        expect(rows.locator(".field-bought_at")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
        expect(version).to_have_text(str(FlashSale.objects.get(pk=sale.pk).version), timeout=WAIT_MS)
        page.screenshot(path=str(ARTIFACTS / "admin-sale-change-all-live.png"), full_page=True)

    assert response.status_code == 201, response.text
    assert Purchase.objects.get(sale=sale).quantity == 3
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 37


def test_the_sale_lists_stock_moves_on_a_purchase(server, browser, request):
    sale = SaleFactory(name="Listed live", original_stock=50)
    SaleFactory(name="Listed quiet", original_stock=10)
    buyer_token = TokenFactory()

    with page_in(browser, request, viewport=DESKTOP) as page:
        sign_in_to_admin(page, server)
        page.goto(f"{server}/admin/sales/flashsale/")
        row = page.locator("#result_list tbody tr", has_text="Listed live")
        expect(row.locator(".stock-bar-numbers")).to_have_text("50 / 50")
        expect(page.locator("#result_list")).to_have_attribute("data-live", "2")
        # Each watched row's snapshot has arrived (it sets data-stock-version): a purchase from now on reaches it.
        expect(row.locator(".stock-bar")).to_have_attribute("data-stock-version", re.compile(r"^\d+$"), timeout=WAIT_MS)

        response = buy_through_api(server, buyer_token.key, sale.pk, 4)

        expect(row.locator(".stock-bar-numbers")).to_have_text("46 / 50", timeout=WAIT_MS)
        expect(row.locator(".field-units_sold")).to_have_text("4")

    assert response.status_code == 201, response.text
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 46


def test_the_purchase_list_shows_every_column_whole_and_seconds_at_1280_px(server, browser, request):
    sale = SaleFactory(name="A sale with a rather long name for its column", original_stock=100)
    PurchaseFactory(sale=sale, quantity=5, user=UserFactory(email="a.rather.long.address@example.com"))
    # Two sales: the list shows its "By sale" filter beside the table.
    PurchaseFactory(sale=SaleFactory(name="Another sale whose name is long as well"), quantity=1)

    with page_in(browser, request, viewport=DESKTOP) as page:
        sign_in_to_admin(page, server)
        page.goto(f"{server}/admin/sales/purchase/")
        page.screenshot(path=str(ARTIFACTS / "admin-purchase-list-1280.png"), full_page=True)

        header = page.locator("th.column-quantity")
        results = page.locator("#changelist .results")
        assert results.evaluate("e => e.scrollWidth <= e.clientWidth"), "the list scrolls sideways"
        assert header.evaluate("e => e.getBoundingClientRect().right") <= page.evaluate(
            "document.documentElement.clientWidth"
        )
        assert header.evaluate("e => e.querySelector('.text').scrollWidth <= e.querySelector('.text').clientWidth")
        expect(page.locator("td.field-bought_at").first).to_have_text(
            re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")
        )

    assert Purchase.objects.count() == 2
