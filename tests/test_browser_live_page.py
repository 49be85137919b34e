"""The live page in headless Chromium (Debian's, through Playwright) against a real Daphne: first paint
from the server's render, no inline script under a strict CSP, registering on the page, and the
quantity check's message."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from accounts.models import User
from harness.servers import daphne_server
from sales.models import FlashSale, Purchase
from tests.browsers import WAIT_MS, page_in, sign_in
from tests.factories import SaleFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ENDS_IN = re.compile(r"^Ends in (\d\d:)?\d\d:\d\d$")
# What the coming Content-Security-Policy allows: scripts and styles from files only.
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws://127.0.0.1:*; base-uri 'none'; form-action 'self'"
)


@pytest.fixture(scope="module")
def server(django_db_setup):
    # DEBUG on: static files straight from the apps' folders, no collectstatic needed.
    with daphne_server(DEBUG="true", CHANNEL_PREFIX=f"test-live-page-{uuid.uuid4().hex[:8]}") as base_url:
        yield base_url


def with_strict_csp(page) -> list[str]:
    """Serve every HTML page with STRICT_CSP; returns the list that collects CSP violations.

    The page then comes from Playwright, not from loopback, and Chromium's local network access
    checks refuse its sockets to 127.0.0.1: use it with a mocked socket (route_web_socket)."""
    violations: list[str] = []
    page.on("console", lambda message: "Content Security Policy" in message.text and violations.append(message.text))

    def add_csp(route):
        response = route.fetch()
        headers = {**response.headers, "content-security-policy": STRICT_CSP}
        route.fulfill(response=response, headers=headers)

    page.route(lambda url: "/static/" not in url and "/api/" not in url, add_csp)
    return violations


def test_before_its_socket_says_anything_the_page_shows_the_sale_under_a_strict_csp(server, browser, request):
    sale = SaleFactory(name="Trail shoes", original_stock=20, current_stock=17)

    with page_in(browser, request) as page:
        violations = with_strict_csp(page)
        # A socket that opens and never speaks: all the page knows is what the server rendered.
        page.route_web_socket("**/ws/**", lambda socket: None)
        page.goto(f"{server}/sales/{sale.pk}/")

        expect(page.locator("#sale-name")).to_have_text("Trail shoes")
        expect(page.get_by_test_id("stock")).to_have_text("17")
        expect(page.locator("#status")).to_have_text("Live")
        # live.js took over from the rendered snapshot: a running countdown and a filled bar.
        expect(page.locator("#countdown")).to_have_text(ENDS_IN, timeout=WAIT_MS)
        expect(page.locator("#bar-fill")).to_have_attribute("style", re.compile(r"width: 85%"))
        expect(page.locator("#account")).to_be_visible()
        assert violations == []

    assert FlashSale.objects.get(pk=sale.pk).current_stock == 17


def test_without_javascript_the_page_still_reads_the_sale(server, browser, request):
    sale = SaleFactory(name="Rain jacket", original_stock=30, current_stock=26)

    with page_in(browser, request, java_script_enabled=False) as page:
        page.goto(f"{server}/")

        expect(page.locator("#sale-name")).to_have_text("Rain jacket")
        expect(page.locator("#status")).to_have_text("Live")
        expect(page.get_by_test_id("stock")).to_have_text("26")
        expect(page.locator("#stock-of")).to_have_text("of 30")
        expect(page.locator("#times")).to_contain_text(f"{sale.end_time:%Y-%m-%d %H:%M} UTC")
        expect(page.locator("#connection")).to_have_text(re.compile(r"^As of \d\d:\d\d UTC$"))
        expect(page.locator("#account")).to_be_hidden()


def test_a_shopper_registers_on_the_page_and_is_signed_in_to_buy(server, browser, request):
    sale = SaleFactory(name="Sneakers", original_stock=10)
    UserFactory(email="ada@example.com", name="Ada")

    with page_in(browser, request) as page:
        page.goto(f"{server}/sales/{sale.pk}/")
        expect(page.locator("#connection")).to_have_text("Connected", timeout=WAIT_MS)
        page.click("#show-register")
        expect(page.locator("#login-form")).to_be_hidden()

        page.fill("#register-name", "Margaret")
        page.fill("#register-email", "Ada@Example.com")
        page.fill("#register-password", "correct-horse-battery")
        page.click("#register-button")
        expect(page.locator("#message")).to_have_text("An account with this email already exists.", timeout=WAIT_MS)
        expect(page.locator("#buy-form")).to_be_hidden()

        page.fill("#register-email", "margaret@example.com")
        page.click("#register-button")
        expect(page.locator("#message")).to_have_text("Account created. You are signed in. Good luck!", timeout=WAIT_MS)
        expect(page.locator("#buy-form")).to_be_visible()
        expect(page.locator("#register-form")).to_be_hidden()
        expect(page.locator("#signed-in-email")).to_have_text(" as margaret@example.com")

        page.fill("#quantity", "3")
        page.click("#buy-button")
        expect(page.locator("#message")).to_have_text("You bought 3. 7 left.", timeout=WAIT_MS)

    margaret = User.objects.get(email="margaret@example.com")
    assert margaret.name == "Margaret" and margaret.check_password("correct-horse-battery")
    assert User.objects.filter(email__iexact="ada@example.com").count() == 1
    assert list(Purchase.objects.filter(sale=sale).values_list("user__email", "quantity")) == [
        ("margaret@example.com", 3)
    ]


def test_a_quantity_above_the_cap_replaces_the_last_message_and_buys_nothing(server, browser, request):
    sale = SaleFactory(name="Phone case", original_stock=10)
    buyer = UserFactory(email="grace@example.com", name="Grace")

    with page_in(browser, request) as page:
        page.goto(f"{server}/sales/{sale.pk}/")
        expect(page.locator("#connection")).to_have_text("Connected", timeout=WAIT_MS)
        sign_in(page, buyer.email)
        page.fill("#quantity", "2")
        page.click("#buy-button")
        expect(page.locator("#message")).to_have_text("You bought 2. 8 left.", timeout=WAIT_MS)

        page.fill("#quantity", "9")
        page.click("#buy-button")
        expect(page.locator("#message")).to_have_text(
            "You can buy 1 to 5 units at a time. Please choose a quantity in that range.", timeout=WAIT_MS
        )
        expect(page.locator("#message")).to_have_attribute("data-kind", "error")
        expect(page.get_by_test_id("stock")).to_have_text("8")

    assert list(Purchase.objects.filter(sale=sale).values_list("quantity", flat=True)) == [2]
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 8
