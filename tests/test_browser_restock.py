"""Buy comes back after a restock, in headless Chromium against a real Daphne (issue 24, item 6).

A module of its own: the restock is a staff write the server records in the admin's history, and
the server process caches content type ids, which a transactional test's flush renews."""

import uuid

import pytest
from playwright.sync_api import expect

from harness.servers import daphne_server
from sales.models import FlashSale
from tests.browsers import WAIT_MS, page_in, sign_in
from tests.factories import SaleFactory, TokenFactory, UserFactory
from tests.test_browser_buyer_pages import buy, post

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def server(django_db_setup):
    with daphne_server(DEBUG="true", CHANNEL_PREFIX=f"test-restock-{uuid.uuid4().hex[:8]}") as base_url:
        yield base_url


def test_buy_is_enabled_again_when_a_sold_out_sale_is_restocked(server, browser, request):
    sale = SaleFactory(name="Lamp", original_stock=4)
    buyer = UserFactory(name="Lin")
    other_token = TokenFactory().key
    staff_token = TokenFactory(user=UserFactory(is_staff=True)).key

    with page_in(browser, request) as page:
        page.goto(f"{server}/sales/{sale.pk}/")
        expect(page.locator("#connection")).to_have_text("Connected", timeout=WAIT_MS)
        sign_in(page, buyer.email)
        page.fill("#quantity", "1")
        page.click("#buy-button")
        expect(page.locator("#message")).to_have_text("You bought 1. 3 left.", timeout=WAIT_MS)

        assert buy(server, other_token, sale.pk, 3).status_code == 201
        # The message does not stay "3 left" beside the "0 left" of the sell-out.
        expect(page.locator("#message")).to_have_text("You bought 1. The sale is now sold out.", timeout=WAIT_MS)
        expect(page.get_by_test_id("stock")).to_have_text("0")
        expect(page.locator("#buy-button")).to_be_disabled()

        assert post(server, f"/api/v1/flashsales/{sale.pk}/add-units", staff_token, {"units": 5}).status_code == 200
        expect(page.get_by_test_id("stock")).to_have_text("5", timeout=WAIT_MS)
        expect(page.locator("#buy-button")).to_be_enabled(timeout=WAIT_MS)

    assert FlashSale.objects.get(pk=sale.pk).current_stock == 5
