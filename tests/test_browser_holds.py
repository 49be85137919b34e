"""Holds on the live page in headless Chromium against a real Daphne: a buyer buys from a sale with
holds, sees the hold's countdown and confirms it; another lets it run out and sees its units come back."""

import re

import pytest
from playwright.sync_api import expect

from harness.servers import daphne_server
from sales import holds
from sales.models import FlashSale, Purchase
from tests.browsers import WAIT_MS, page_in, sign_in
from tests.factories import SaleFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

COUNTING = re.compile(r"^Held for you: 1 × for \d+:\d\d\. Confirm once you have paid\.$")


@pytest.fixture(scope="module")
def server(django_db_setup):
    # DEBUG on: static files straight from the apps' folders. The channel prefix is the tests' own,
    # so a push sent from this process (the sale clock's) reaches the server's sockets.
    with daphne_server(DEBUG="true") as base_url:
        yield base_url


def test_a_buyer_buys_sees_the_holds_countdown_and_confirms_it(server, browser, request):
    sale = SaleFactory(name="Held shoes", original_stock=5, hold_seconds=600)
    buyer = UserFactory()

    with page_in(browser, request) as page:
        page.goto(f"{server}/sales/{sale.pk}/")
        sign_in(page, buyer.email)
        page.click("#buy-button")

        expect(page.locator("#hold")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#hold-countdown")).to_have_text(COUNTING, timeout=WAIT_MS)
        expect(page.locator("#stock")).to_have_text("4", timeout=WAIT_MS)
        expect(page.locator("#message")).to_have_text("Held for you: 1. 4 left.")
        assert Purchase.objects.get(sale=sale).status == "held"
        page.click("#hold-confirm")

        expect(page.locator("#hold-message")).to_have_text("Confirmed: the units are yours.", timeout=WAIT_MS)
        expect(page.locator("#hold-confirm")).to_be_hidden()
    order = Purchase.objects.get(sale=sale)
    assert (order.status, order.user_id) == ("confirmed", buyer.pk)
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 4


def test_a_hold_left_to_run_out_expires_and_its_units_come_back(server, browser, request):
    sale = SaleFactory(name="Short hold", original_stock=5, hold_seconds=2)
    buyer = UserFactory()

    with page_in(browser, request) as page:
        page.goto(f"{server}/sales/{sale.pk}/")
        sign_in(page, buyer.email)
        page.click("#buy-button")
        expect(page.locator("#hold-countdown")).to_have_text(COUNTING, timeout=WAIT_MS)
        expect(page.locator("#stock")).to_have_text("4", timeout=WAIT_MS)

        # The page counts down to the end of the hold by itself...
        expect(page.locator("#hold-message")).to_have_text(
            "Your hold expired: its units went back to the sale.", timeout=WAIT_MS
        )
        # ...and the sale clock's tick returns the unit and pushes the stock to the open page.
        assert [returned.units for returned in holds.expire_holds()] == [1]
        expect(page.locator("#stock")).to_have_text("5", timeout=WAIT_MS)
    assert Purchase.objects.get(sale=sale).status == "expired"
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 5


def test_held_units_are_a_part_of_the_stock_bar_of_their_own(server, browser, request):
    sale = SaleFactory(name="Held bar", original_stock=4, hold_seconds=600)
    buyer = UserFactory()

    with page_in(browser, request) as page:
        page.goto(f"{server}/sales/{sale.pk}/")
        held_part = page.locator("#bar-held")
        expect(held_part).to_have_attribute("data-held", "0", timeout=WAIT_MS)
        sign_in(page, buyer.email)
        page.click("#buy-button")

        # A socket push: the held part grows by the unit, the remaining part shrinks.
        expect(held_part).to_have_attribute("data-held", "1", timeout=WAIT_MS)
        expect(page.locator("#stock")).to_have_text("3", timeout=WAIT_MS)
        assert held_part.evaluate("node => node.style.width") == "25%"  # 1 of 4 units
        page.click("#hold-confirm")

        expect(held_part).to_have_attribute("data-held", "0", timeout=WAIT_MS)
    assert Purchase.objects.get(sale=sale).status == "confirmed"
