"""The Content-Security-Policy in a real headless Chromium: the live page (with its socket and API
calls), the admin and Swagger UI work, and the browser reports no violation."""

import subprocess
import sys
from uuid import uuid4

import pytest
from playwright.sync_api import expect
from rest_framework.authtoken.models import Token

from harness.servers import PROJECT_DIR, daphne_server, server_env
from sales.models import FlashSale, Purchase
from tests.browsers import WAIT_MS, page_in, sign_in
from tests.factories import PASSWORD, SaleFactory, TokenFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    """One Daphne process, DEBUG off, static files from WhiteNoise: what ./scripts/serve runs."""
    shared = {"CHANNEL_PREFIX": f"test-csp-{uuid4().hex[:8]}", "STATIC_ROOT": str(tmp_path_factory.mktemp("static"))}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=PROJECT_DIR,
        env=server_env(**shared),
        check=True,
    )
    with daphne_server(**shared) as base_url:
        yield base_url


def watch_violations(page) -> list[str]:
    """Every CSP violation the page reports: Chromium logs each one to the console."""
    violations = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return violations


def test_the_live_page_signs_in_buys_and_follows_its_socket_without_csp_violations(server, browser, request):
    sale = SaleFactory(name="Trail shoes", original_stock=10)
    buyer = UserFactory(email="ada@example.com", name="Ada")

    with page_in(browser, request) as page:
        violations = watch_violations(page)
        page.goto(f"{server}/sales/{sale.pk}/")
        expect(page.locator("#connection")).to_have_text("Connected", timeout=WAIT_MS)
        sign_in(page, buyer.email)
        page.fill("#quantity", "2")
        page.click("#buy-button")
        expect(page.get_by_test_id("stock")).to_have_text("8", timeout=WAIT_MS)

        assert violations == []
    assert Purchase.objects.filter(sale=sale, user=buyer).count() == 1


def test_the_admin_works_without_csp_violations(server, browser, request):
    sale = SaleFactory(name="Rain jacket", original_stock=30)
    staff = UserFactory(email="boss@example.com", is_staff=True, is_superuser=True)

    with page_in(browser, request) as page:
        violations = watch_violations(page)
        page.goto(f"{server}/admin/")
        page.fill("#id_username", staff.email)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        expect(page.locator("#user-tools")).to_be_visible(timeout=WAIT_MS)
        page.goto(f"{server}/admin/sales/flashsale/")
        expect(page.locator("#result_list")).to_contain_text("Rain jacket", timeout=WAIT_MS)
        page.goto(f"{server}/admin/sales/flashsale/{sale.pk}/change/")
        expect(page.locator("#id_name")).to_have_value("Rain jacket", timeout=WAIT_MS)
        # The admin's own scripts ran: the date-time widgets add their shortcuts.
        expect(page.locator(".datetimeshortcuts").first).to_be_visible(timeout=WAIT_MS)

        assert violations == []


def test_swagger_ui_renders_the_schema_without_csp_violations(server, browser, request):
    with page_in(browser, request) as page:
        violations = watch_violations(page)
        page.goto(f"{server}/api/docs/")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("flashsale API", timeout=WAIT_MS)
        expect(page.locator(".opblock").first).to_be_visible(timeout=WAIT_MS)

        assert violations == []


def test_swagger_ui_authorizes_with_the_token_pasted_alone(server, browser, request):
    SaleFactory(name="Rain jacket")
    token = TokenFactory()

    with page_in(browser, request) as page:
        violations = watch_violations(page)
        page.goto(f"{server}/api/docs/")
        page.click("button.authorize", timeout=WAIT_MS)
        page.fill(".modal-ux input", token.key)
        page.click(".modal-ux button.authorize")
        page.click(".modal-ux button.btn-done")

        operation = page.locator("#operations-flashsales-v1_flashsales_list")
        operation.locator(".opblock-summary").click()
        operation.locator("button.try-out__btn").click()
        operation.locator("button.execute").click()

        status = operation.locator(".live-responses-table tbody .response-col_status").first
        expect(status).to_have_text("200", timeout=WAIT_MS)
        expect(operation.locator(".live-responses-table")).to_contain_text("Rain jacket")
        assert violations == []

    assert Token.objects.filter(key=token.key).exists()


def test_the_live_pages_favicon_is_served_under_the_csp(server, browser, request):
    sale = SaleFactory(name="Trail shoes")

    with page_in(browser, request) as page:
        violations = watch_violations(page)
        page.goto(f"{server}/sales/{sale.pk}/")
        icon = page.locator("link[rel=icon]").get_attribute("href")
        response = page.request.get(f"{server}{icon}")

        assert response.status == 200
        assert response.headers["content-type"].startswith("image/svg+xml")
        assert violations == []
    assert FlashSale.objects.filter(pk=sale.pk).exists()
