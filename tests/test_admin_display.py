"""What the admin shows: counts read as English, one date format on every page, a change page wired to
its sale's live stock feed (the feed itself is driven in tests/test_browser_admin.py)."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from sales import purchase
from sales.models import FlashSale, Purchase
from tests.factories import PurchaseFactory, SaleFactory, UserFactory

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 25, 19, 15, 42, tzinfo=UTC)
# Django's English formats, which the admin used to mix with ISO-like dates.
ENGLISH_DATE = re.compile(r"\b(Jan|Feb|March|April|May|June|July|Aug|Sept|Oct|Nov|Dec)\.? \d{1,2}, \d{4}|[ap]\.m\.")


@pytest.fixture
def superuser_browser(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


PURCHASES = reverse("admin:sales_purchase_changelist")


def change_url(sale) -> str:
    return reverse("admin:sales_flashsale_change", args=[sale.pk])


def test_a_sale_with_one_purchase_says_one_purchase_and_with_two_says_purchases(superuser_browser):
    one = SaleFactory(name="One")
    PurchaseFactory(sale=one)
    two = SaleFactory(name="Two")
    PurchaseFactory.create_batch(2, sale=two, quantity=1)

    page_one = superuser_browser.get(change_url(one)).content.decode()
    page_two = superuser_browser.get(change_url(two)).content.decode()

    assert f'1 purchase</span>: <a href="{PURCHASES}?sale__id__exact={one.pk}">see the list</a>, <a' in page_one
    assert "1 purchases" not in page_one
    assert f'2 purchases</span>: <a href="{PURCHASES}?sale__id__exact={two.pk}">see the list</a>, <a' in page_two
    assert Purchase.objects.filter(sale=two).count() == 2


def test_restocking_one_unit_says_one_unit(superuser_browser):
    sale = SaleFactory(name="Socks", original_stock=10)

    response = superuser_browser.post(
        reverse("admin:sales_flashsale_add_units", args=[sale.pk]), {"units": "1"}, follow=True
    )

    assert "Added 1 unit to “Socks”: stock is now 11 / 11." in response.content.decode()
    assert FlashSale.objects.get(pk=sale.pk).original_stock == 11


def test_every_admin_page_shows_dates_in_one_format(superuser_browser):
    sale = SaleFactory(name="Boots", start_time=START, end_time=START + timedelta(hours=2))
    FlashSale.objects.filter(pk=sale.pk).update(created_at=START - timedelta(days=1))
    buyer = UserFactory(name="Grace")
    purchase = PurchaseFactory(sale=sale, user=buyer)
    Purchase.objects.filter(pk=purchase.pk).update(created_at=START + timedelta(minutes=5))

    pages = {
        "sale list": reverse("admin:sales_flashsale_changelist"),
        "sale": change_url(sale),
        "purchase list": reverse("admin:sales_purchase_changelist"),
        "purchase": reverse("admin:sales_purchase_change", args=[purchase.pk]),
        "user list": reverse("admin:accounts_user_changelist"),
        "user": reverse("admin:accounts_user_change", args=[buyer.pk]),
    }
    html = {}
    for name, url in pages.items():
        response = superuser_browser.get(url)
        assert response.status_code == 200, name
        html[name] = response.content.decode()
        assert not ENGLISH_DATE.search(html[name]), (name, ENGLISH_DATE.search(html[name]).group(0))

    # The list wraps between date and time only; the text is the same format.
    assert '<span class="nowrap">2026-11-25</span> <span class="nowrap">19:15 UTC</span>' in html["sale list"]
    assert '<span class="nowrap">2026-11-25</span> <span class="nowrap">21:15 UTC</span>' in html["sale list"]
    assert "2026-11-24 19:15 UTC" in html["sale"]  # created at
    # Purchases listed show seconds: the order of purchases within a minute matters.
    assert "2026-11-25 19:20:42 UTC" in html["sale"]  # the inline's newest purchase
    assert '<span class="nowrap">2026-11-25</span> <span class="nowrap">19:20:42 UTC</span>' in html["purchase list"]
    assert "2026-11-25 19:20 UTC" in html["purchase"]
    joined = f"{buyer.date_joined.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    assert joined in html["user list"] and joined in html["user"]


def test_a_sale_change_page_is_wired_to_its_live_stock_feed_without_inline_script(superuser_browser):
    sale = SaleFactory(name="Live", original_stock=40)
    purchase.purchase(user=UserFactory(), sale_id=sale.pk, quantity=3)
    sale.refresh_from_db()

    response = superuser_browser.get(change_url(sale))

    html = response.content.decode()
    assert response.status_code == 200
    assert f'data-live-stock data-sale-id="{sale.pk}" data-stock-version="{sale.stock_version}"' in html
    assert '<span class="live-stock-numbers">37 / 40</span>' in html
    assert '<small class="live-stock-sold">3 units sold</small>' in html
    assert 'src="/static/sales/admin_live_stock.js"' in html
    assert 'href="/static/sales/admin.css"' in html
    # Our templates add no inline <style> or <script> (the CSS moved into admin.css).
    assert "<style>" not in html
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 37


def test_a_sale_change_page_names_the_socket_port_when_sockets_are_served_apart(superuser_browser, settings):
    # ./scripts/serve: pages from gunicorn, sockets from Daphne on WEBSOCKET_PORT.
    settings.WEBSOCKET_PORT = 8001
    sale = SaleFactory(name="Live", original_stock=40)

    html = superuser_browser.get(change_url(sale)).content.decode()

    assert f'data-sale-id="{sale.pk}" data-stock-version="{sale.stock_version}" data-socket-port="8001"' in html


def test_a_sale_without_purchases_says_none_yet_in_its_newest_purchases(superuser_browser):
    sale = SaleFactory(name="Quiet")

    html = superuser_browser.get(change_url(sale)).content.decode()

    assert '<tr class="none-yet"><td colspan="5">None yet.</td></tr>' in html
    assert '<span class="live-purchase-count">0 purchases</span>' in html
    assert not Purchase.objects.filter(sale=sale).exists()


def test_the_change_pages_export_csv_link_downloads_the_sales_purchases(superuser_browser):
    sale = SaleFactory(name="Boots")
    mine = PurchaseFactory(sale=sale, quantity=2, user=UserFactory(email="grace@example.com"))
    PurchaseFactory(quantity=1)  # another sale's
    html = superuser_browser.get(change_url(sale)).content.decode()
    export = re.search(r'<a href="([^"]+)" download>export CSV</a>', html).group(1).replace("&amp;", "&")

    response = superuser_browser.get(export)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = b"".join(response.streaming_content).decode().splitlines()
    assert rows[0].startswith("purchase_id,sale_id,sale_name")
    assert [row.split(",")[0] for row in rows[1:]] == [str(mine.pk)]
    assert Purchase.objects.count() == 2


def test_a_sale_change_pages_live_json_has_its_count_version_and_newest_purchases(superuser_browser):
    sale = SaleFactory(name="Live", original_stock=40)
    buyer = UserFactory(email="ada@example.com", name="Ada")
    purchase.purchase(user=buyer, sale_id=sale.pk, quantity=3)
    purchase.purchase(user=UserFactory(email="bob@example.com", name="Bob"), sale_id=sale.pk, quantity=1)
    sale.refresh_from_db()
    newest = Purchase.objects.filter(sale=sale).order_by("-created_at", "-id").first()

    response = superuser_browser.get(reverse("admin:sales_flashsale_live", args=[sale.pk]))

    assert response.status_code == 200
    data = response.json()
    assert data["version"] == sale.version
    assert (data["currentStock"], data["originalStock"]) == (36, 40)
    assert (data["purchaseCount"], data["purchaseCountText"]) == (2, "2 purchases")
    assert [(row["buyerEmail"], row["quantity"]) for row in data["purchases"]] == [
        ("bob@example.com", 1),
        ("ada@example.com", 3),
    ]
    assert data["purchases"][0]["url"] == reverse("admin:sales_purchase_change", args=[newest.pk])
    assert data["purchases"][0]["boughtAt"] == f"{newest.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def test_a_sale_change_pages_live_json_is_for_staff_only(client):
    sale = SaleFactory()
    client.force_login(UserFactory())

    response = client.get(reverse("admin:sales_flashsale_live", args=[sale.pk]))

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert FlashSale.objects.filter(pk=sale.pk).exists()


def test_admin_pages_link_the_sites_favicon(superuser_browser):
    sale = SaleFactory(name="Boots")

    pages = [reverse("admin:index"), reverse("admin:sales_flashsale_changelist"), change_url(sale)]

    for url in pages:
        html = superuser_browser.get(url).content.decode()
        assert '<link rel="icon" href="/static/sales/favicon.svg" type="image/svg+xml">' in html, url
        assert "<title>" in html and "flashsale admin</title>" in html, url
    assert FlashSale.objects.filter(pk=sale.pk).exists()


def test_a_waiting_room_sales_change_page_shows_its_line(superuser_browser):
    from datetime import timedelta

    from django.utils import timezone

    from sales.models import QueuePlace

    sale = SaleFactory(waiting_room=True, original_stock=10, admitted_through=2)
    now = timezone.now()
    for position in (1, 2, 3):
        QueuePlace.objects.create(
            sale=sale,
            user=UserFactory(),
            position=position,
            admitted_until=now + timedelta(minutes=2) if position <= 2 else None,
        )

    response = superuser_browser.get(change_url(sale))

    assert response.status_code == 200
    html = response.content.decode()
    assert (
        '<span class="line-length">3</span> in line · admitted through <span class="line-admitted-through">2</span>'
        ' · <span class="line-admitted-not-bought">2</span> admitted, not yet bought'
        ' · <span class="line-purchase-rate">0.0</span> purchases/s'
        ' · <span class="line-admission">admitting 20/s</span>' in html
    )
    assert 'name="admission_paused"' in html and 'name="admit_per_second"' in html
    assert QueuePlace.objects.filter(sale=sale).count() == 3


def test_a_waiting_room_sales_live_json_has_its_line_and_a_plain_sales_has_none(superuser_browser):
    from django.utils import timezone

    from sales.models import QueuePlace

    sale = SaleFactory(waiting_room=True, original_stock=10, admitted_through=2, admit_per_second=7)
    plain = SaleFactory()
    now = timezone.now()
    buyers = [UserFactory() for _ in range(4)]
    for position, buyer in enumerate(buyers, start=1):
        admitted = now + timedelta(minutes=2) if position <= 2 else None
        QueuePlace.objects.create(sale=sale, user=buyer, position=position, admitted_until=admitted)
    purchase.purchase(user=buyers[0], sale_id=sale.pk, quantity=1)

    line = superuser_browser.get(reverse("admin:sales_flashsale_live", args=[sale.pk])).json()["waitingRoom"]
    none = superuser_browser.get(reverse("admin:sales_flashsale_live", args=[plain.pk])).json()["waitingRoom"]

    # One purchase in the last ten seconds; the buyer who bought no longer counts as admitted, not bought.
    assert line == {
        "queueLength": 4,
        "admittedThrough": 2,
        "admittedNotBought": 1,
        "purchasesPerSecond": "0.1",
        "admitPerSecond": 7,
        "admissionPaused": False,
        "admission": "admitting 7/s",
    }
    assert none is None
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 9
