"""The live page in a real headless Chromium (Debian's, driven by Playwright), against two real
Daphne processes sharing Redis: what a buyer sees, without reloading, when others buy elsewhere."""

import sqlite3
import subprocess
import sys
from datetime import timedelta
from uuid import uuid4

import httpx
import pytest
from playwright.sync_api import expect

from harness.faults import server_process
from harness.redis_namespace import scoped
from harness.servers import PROJECT_DIR, daphne_server, server_env
from sales.models import FlashSale, Purchase
from tests.browsers import WAIT_MS, page_in, sign_in
from tests.factories import SaleFactory, TokenFactory, UserFactory
from tests.test_first_command import first_command, insert_sale, migrate, service_env, sign_up

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def servers(django_db_setup, tmp_path_factory):
    """Two Daphne processes (DEBUG off, static files from WhiteNoise) on one Redis channel layer."""
    static_root = tmp_path_factory.mktemp("static")
    shared = {"CHANNEL_PREFIX": scoped(f"browser-{uuid4().hex[:8]}"), "STATIC_ROOT": str(static_root)}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=PROJECT_DIR,
        env=server_env(**shared),
        check=True,
    )
    with daphne_server(**shared) as server_a, daphne_server(**shared) as server_b:
        yield server_a, server_b, shared


def buy_through_api(server: str, token: str, sale_id: int, quantity: int) -> httpx.Response:
    return httpx.post(
        f"{server}/api/v1/flashsales/purchase",
        json={"saleId": sale_id, "quantity": quantity},
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    )


def test_the_page_shows_stock_bought_through_another_server_without_reloading(servers, browser, request):
    server_a, server_b, _ = servers
    sale = SaleFactory(name="Trail shoes", original_stock=20)
    # A name that would run script if it ever reached innerHTML.
    buyer = UserFactory(name='<img src=x onerror="window.__pwned=1">Eve')
    token = TokenFactory(user=buyer)

    with page_in(browser, request) as page:
        page.goto(f"{server_a}/sales/{sale.pk}/")
        expect(page.locator("#connection")).to_have_text("Connected", timeout=WAIT_MS)
        expect(page.get_by_test_id("stock")).to_have_text("20", timeout=WAIT_MS)
        expect(page.locator("#sale-name")).to_have_text("Trail shoes")
        page.evaluate("window.__sameDocument = true")

        response = buy_through_api(server_b, token.key, sale.pk, 3)

        expect(page.get_by_test_id("stock")).to_have_text("17", timeout=WAIT_MS)
        expect(page.locator("#purchases li").first.locator(".who")).to_have_text(buyer.name, timeout=WAIT_MS)
        assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
        assert page.evaluate("window.__pwned") is None
        assert page.locator("#purchases img").count() == 0

    assert response.status_code == 201, response.text
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 17


def test_a_buyer_signs_in_and_buys_on_a_phone_sized_home_page(servers, browser, request):
    server_a, _, _ = servers
    sale = SaleFactory(name="Phone case", original_stock=10)
    buyer = UserFactory(email="ada@example.com", name="Ada")

    with page_in(browser, request, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True) as page:
        page.goto(f"{server_a}/")
        expect(page.locator("#sale-name")).to_have_text("Phone case", timeout=WAIT_MS)
        expect(page.get_by_test_id("stock")).to_have_text("10", timeout=WAIT_MS)
        # Nothing sticks out sideways on a phone.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

        page.fill("#email", "wrong@example.com")
        page.fill("#password", "not-the-password")
        page.click("#login-button")
        expect(page.locator("#message")).to_have_text("Wrong email or password.", timeout=WAIT_MS)

        sign_in(page, buyer.email)

        page.fill("#quantity", "2")
        page.click("#buy-button")
        expect(page.locator("#message")).to_have_text("You bought 2. 8 left.", timeout=WAIT_MS)
        expect(page.get_by_test_id("stock")).to_have_text("8", timeout=WAIT_MS)

        # The per-buyer cap (5) refuses a further 4: the page explains, and nothing is taken.
        page.fill("#quantity", "4")
        page.click("#buy-button")
        expect(page.locator("#message")).to_have_text("You have 2; you can buy 3 more.", timeout=WAIT_MS)
        expect(page.get_by_test_id("stock")).to_have_text("8")

    assert list(Purchase.objects.filter(sale=sale).values_list("user__name", "quantity")) == [("Ada", 2)]
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 8


def test_the_page_reconnects_after_its_server_dies_and_shows_what_it_missed(servers, browser, request):
    _, server_b, shared = servers
    sale = SaleFactory(name="Rain jacket", original_stock=30)
    token = TokenFactory(user=UserFactory(name="Linus"))

    with server_process(**shared) as server_c, page_in(browser, request) as page:
        page.goto(f"{server_c.base_url}/sales/{sale.pk}/")
        expect(page.locator("#connection")).to_have_text("Connected", timeout=WAIT_MS)
        expect(page.get_by_test_id("stock")).to_have_text("30", timeout=WAIT_MS)
        page.evaluate("window.__sameDocument = true")

        server_c.kill()  # a crash, not a clean shutdown
        expect(page.locator("#connection")).to_have_text("Reconnecting…", timeout=WAIT_MS)
        # Bought elsewhere while this page had no socket: no push can reach it.
        response = buy_through_api(server_b, token.key, sale.pk, 4)
        expect(page.get_by_test_id("stock")).to_have_text("30")
        server_c.start()  # same port

        expect(page.locator("#connection")).to_have_text("Connected", timeout=WAIT_MS)
        expect(page.get_by_test_id("stock")).to_have_text("26", timeout=WAIT_MS)
        expect(page.locator("#purchases li").first.locator(".who")).to_have_text("Linus", timeout=WAIT_MS)
        assert page.evaluate("window.__sameDocument") is True, "the page reloaded"

    assert response.status_code == 201, response.text
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 26


def test_the_page_served_by_gunicorn_under_the_first_command_shows_purchases_through_daphne(tmp_path, browser, request):
    # ./scripts/serve on SQLite without Redis: pages from gunicorn, the socket on Daphne's port,
    # which only the page's data attribute names. (Here rather than in test_first_command.py so the
    # suite drives one Playwright session.)
    sqlite_path = tmp_path / "page.sqlite3"
    env = service_env(sqlite_path, STATIC_ROOT=str(tmp_path / "static"))
    migrate(sqlite_path)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=PROJECT_DIR, env=env, check=True
    )
    with first_command(env) as (pages, _sockets):
        token = sign_up(pages)
        sale_id = insert_sale(sqlite_path, starts_in=timedelta(minutes=-1), stock=10)
        with page_in(browser, request) as page:
            page.goto(f"{pages}/sales/{sale_id}/")
            expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
            expect(page.get_by_test_id("stock")).to_have_text("10", timeout=WAIT_MS)
            response = buy_through_api(pages, token, sale_id, 3)
            expect(page.get_by_test_id("stock")).to_have_text("7", timeout=WAIT_MS)

    assert response.status_code == 201, response.text
    with sqlite3.connect(sqlite_path) as db:
        assert db.execute("SELECT current_stock FROM sales_flashsale WHERE id = ?", (sale_id,)).fetchone() == (7,)
