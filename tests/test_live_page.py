"""The live page as the server renders it, before any script runs: the sale reads right without
JavaScript, and the page carries no inline script (a Content-Security-Policy can forbid them)."""

import json
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.utils import timezone

from live import realtime
from sales.models import FlashSale
from tests.factories import PurchaseFactory, SaleFactory, UserFactory

pytestmark = pytest.mark.django_db


class _PageReader(HTMLParser):
    """Text by element id, the attributes of every element with an id, and every <script>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text: dict[str, str] = {}
        self.attrs: dict[str, dict[str, str | None]] = {}
        self.scripts: list[dict[str, str | None]] = []
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts.append(attrs)
        if "id" in attrs:
            self.attrs[attrs["id"]] = attrs
            self.text.setdefault(attrs["id"], "")
            self._open.append(attrs["id"])
        elif tag not in {"input", "meta", "link", "br"}:
            self._open.append("")

    def handle_endtag(self, tag):
        if tag not in {"input", "meta", "link", "br"} and self._open:
            self._open.pop()

    def handle_data(self, data):
        for element_id in self._open:
            if element_id:
                self.text[element_id] += data


def read_page(response) -> _PageReader:
    assert response.status_code == 200
    reader = _PageReader()
    reader.feed(response.content.decode())
    return reader


def snapshot_in(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="sale-snapshot" type="application/json">')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    return json.loads(body)


def test_the_home_page_renders_the_live_sale_before_its_socket_connects(client):
    sale = SaleFactory(name="Trail shoes", original_stock=20, current_stock=17)

    response = client.get("/")

    page = read_page(response)
    assert page.text["sale-name"] == "Trail shoes"
    assert page.text["status"] == "Live"
    assert page.attrs["status"]["data-status"] == "active"
    assert page.text["stock"] == "17"
    assert page.text["stock-of"] == "of 20"
    assert page.attrs["bar"]["aria-valuenow"] == "17"
    end = timezone.localtime(sale.end_time)
    assert page.text["countdown"] == f"Ends {end:%Y-%m-%d %H:%M} UTC."
    assert page.text["start-time"] == f"{timezone.localtime(sale.start_time):%Y-%m-%d %H:%M} UTC"
    assert page.text["end-time"] == f"{end:%Y-%m-%d %H:%M} UTC"
    assert page.text["connection"] == f"As of {timezone.localtime():%H:%M} UTC" or page.text["connection"].startswith(
        "As of "
    )
    assert "No sale" not in response.content.decode()
    assert "Loading" not in response.content.decode()
    # live.js starts from exactly what the socket would send.
    assert snapshot_in(response) == realtime.snapshot_message(FlashSale.objects.get(pk=sale.pk))


def test_a_pending_sale_page_says_when_it_starts(client):
    sale = SaleFactory(name="Rain jacket", start_time=timezone.now() + timedelta(hours=2))

    page = read_page(client.get(f"/sales/{sale.pk}/"))

    # "Starts soon" is kept for the last hour before the start.
    assert page.text["status"] == "Upcoming"
    assert page.attrs["status"]["data-status"] == "pending"
    assert page.text["countdown"] == f"Starts {timezone.localtime(sale.start_time):%Y-%m-%d %H:%M} UTC."
    assert page.text["stock"] == "200"


def test_a_sale_starting_within_the_hour_says_it_starts_soon(client):
    sale = SaleFactory(name="Rain jacket", start_time=timezone.now() + timedelta(minutes=59))

    page = read_page(client.get(f"/sales/{sale.pk}/"))

    assert page.text["status"] == "Starts soon"
    assert page.attrs["status"]["data-status"] == "pending"
    assert FlashSale.objects.get(pk=sale.pk).status == "pending"


def test_a_sold_out_sale_page_says_so_and_lists_its_latest_purchases_escaped(client):
    sale = SaleFactory(name="Phone case", original_stock=3, current_stock=0)
    PurchaseFactory(sale=sale, quantity=1, user=UserFactory(name="Grace"))
    PurchaseFactory(sale=sale, quantity=2, user=UserFactory(name='<img src=x onerror="alert(1)">Eve'))

    response = client.get(f"/sales/{sale.pk}/")

    page = read_page(response)
    assert page.text["status"] == "Sold out"
    assert page.text["countdown"] == "Every unit has been sold."
    assert page.text["stock"] == "0"
    html = response.content.decode()
    assert "<img" not in html
    newest_first = html.index("&lt;img src=x"), html.index("Grace")
    assert newest_first[0] < newest_first[1]
    assert page.attrs["no-purchases"].keys() >= {"hidden"}
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 0


def test_the_home_page_without_any_sale_says_so_instead_of_loading(client):
    response = client.get("/")

    page = read_page(response)
    assert page.text["sale-name"] == "No sale yet"
    assert page.text["status"] == "No sale"
    assert page.text["countdown"] == "No sale is scheduled yet."
    assert "hidden" in page.attrs["times"]
    assert snapshot_in(response) == {"type": "snapshot", "saleId": None, "status": None}


def test_the_page_has_no_inline_script_and_its_forms_wait_for_javascript(client):
    SaleFactory(name="Sneakers")

    page = read_page(client.get("/"))

    # Every script is a file or inert JSON: a CSP without 'unsafe-inline' runs the page unchanged.
    assert page.scripts, "the page has no script at all"
    for script in page.scripts:
        assert script.get("src") or script.get("type") == "application/json", script
    assert [s["id"] for s in page.scripts if s.get("type") == "application/json"] == ["sale-snapshot"]
    # Without JavaScript the forms could only put a password in a URL: they start hidden.
    assert "hidden" in page.attrs["account"]
    assert {"login-form", "register-form", "buy-form"} <= page.attrs.keys()
    assert "novalidate" in page.attrs["buy-form"]


def test_an_ended_sale_page_points_to_the_next_sale_and_lists_the_live_and_upcoming_ones(client):
    now = timezone.now()
    ended = SaleFactory(name="Over", start_time=now - timedelta(hours=2), end_time=now - timedelta(hours=1))
    live = SaleFactory(name="Boots", end_time=now + timedelta(minutes=30))
    upcoming = SaleFactory(name="Gloves", start_time=now + timedelta(hours=3))

    page = read_page(client.get(f"/sales/{ended.pk}/"))

    assert page.text["status"] == "Ended"
    assert page.text["also-live"].strip() == "1 other sale is live"
    assert "hidden" not in page.attrs["next"]
    assert page.text["next-link"] == "Boots"
    assert page.attrs["next-link"]["href"] == f"/sales/{live.pk}/"
    assert "hidden" not in page.attrs["others-card"]
    assert " ".join(page.text["others"].split()) == (
        f"Boots Live Ends {timezone.localtime(live.end_time):%Y-%m-%d %H:%M} UTC "
        f"Gloves Upcoming Starts {timezone.localtime(upcoming.start_time):%Y-%m-%d %H:%M} UTC"
    )
    assert FlashSale.objects.count() == 3


def test_a_live_sale_page_does_not_point_elsewhere_and_does_not_list_itself(client):
    sale = SaleFactory(name="Boots")

    page = read_page(client.get(f"/sales/{sale.pk}/"))

    assert "hidden" in page.attrs["next"]
    assert "hidden" in page.attrs["others-card"]
    assert "hidden" in page.attrs["also-live"]
    assert page.text["others"].strip() == ""
    assert FlashSale.objects.get(pk=sale.pk).status == "active"
