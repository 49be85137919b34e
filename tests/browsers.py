"""Headless Chromium (Debian's, driven by Playwright) for the browser tests: where it is, how it
starts, and a page that keeps a screenshot when its test fails. The `browser` fixture is in conftest."""

import re
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import expect

from tests.factories import PASSWORD, UserFactory

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WAIT_MS = 15_000  # upper bound for the page to catch up; passing runs take milliseconds


@contextmanager
def page_in(browser, request, **context_options):
    """A fresh page; on failure its screenshot goes to tests/artifacts/<test>.png."""
    context = browser.new_context(**context_options)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
        assert errors == [], f"JavaScript errors: {errors}"
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]", "_", request.node.name)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        raise
    finally:
        context.close()


def sign_in(page, email: str, password: str = PASSWORD) -> None:
    """Sign in on the live page and wait for its buy form."""
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("#login-button")
    expect(page.locator("#buy-form")).to_be_visible(timeout=WAIT_MS)


def sign_in_to_admin(page, server: str) -> None:
    """Sign a new staff member in to the admin of `server`."""
    staff = UserFactory(is_staff=True, name="Boss")
    page.goto(f"{server}/admin/login/?next=/admin/")
    page.fill("#id_username", staff.email)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible(timeout=WAIT_MS)
