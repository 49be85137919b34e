"""The drop dashboard's reads (sales/dashboard.py), its refusal tally (sales/refusals.py) and its staff-only
JSON (sales/dashboard_views.py). The live chart in a real browser is tests/test_browser_dashboard.py."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from core.cache import ResilientRedisCache
from harness.servers import free_port
from sales import dashboard, purchase, refusals
from sales.models import FlashSale, Purchase
from tests.conftest import client_for
from tests.factories import PurchaseFactory, SaleFactory, UserFactory

pytestmark = pytest.mark.django_db

DATA = reverse("admin:dashboard-data")
PAGE = reverse("admin:dashboard")
PURCHASE = "/api/v1/flashsales/purchase"


def minute_ago(minutes: int):
    return timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=minutes)


def test_units_per_minute_sums_the_units_of_each_minute_and_fills_quiet_minutes_with_zero():
    start = minute_ago(10)
    sale = SaleFactory(start_time=start, end_time=start + timedelta(hours=1))
    other = SaleFactory(start_time=start, end_time=start + timedelta(hours=1))
    for offset, quantity in [(0, 1), (10, 2), (59.9, 1), (60, 3), (61, 1), (180, 2), (239.5, 1)]:
        PurchaseFactory(sale=sale, quantity=quantity, created_at=start + timedelta(seconds=offset))
    PurchaseFactory(sale=other, quantity=5, created_at=start + timedelta(seconds=30))

    counts = dashboard.units_per_minute(sale_id=sale.pk, start=sale.start_time, end=start + timedelta(seconds=239.9))

    assert counts == [
        (start, 4),
        (start + timedelta(minutes=1), 4),
        (start + timedelta(minutes=2), 0),
        (start + timedelta(minutes=3), 3),
    ]
    assert sum(units for _, units in counts) == sum(
        Purchase.objects.filter(sale=sale).values_list("quantity", flat=True)
    )


def test_units_per_minute_counts_held_and_confirmed_units_not_holds_that_came_back():
    start = minute_ago(3)
    sale = SaleFactory(start_time=start, end_time=start + timedelta(hours=1), hold_seconds=60)
    at = start + timedelta(seconds=5)
    for quantity, status in [(1, "confirmed"), (2, "held"), (4, "expired"), (8, "released")]:
        PurchaseFactory(
            sale=sale, quantity=quantity, status=status, created_at=at, expires_at=at + timedelta(minutes=1)
        )

    counts = dashboard.units_per_minute(sale_id=sale.pk, start=start, end=start + timedelta(seconds=59))

    assert counts == [(start, 3)]
    assert Purchase.objects.filter(sale=sale).count() == 4


def test_units_per_minute_is_one_query(django_assert_num_queries):
    start = minute_ago(3)
    sale = SaleFactory(start_time=start)
    for offset in range(0, 180, 7):
        PurchaseFactory(sale=sale, created_at=start + timedelta(seconds=offset))

    with django_assert_num_queries(1):
        counts = dashboard.units_per_minute(sale_id=sale.pk, start=start, end=start + timedelta(seconds=179))

    assert [units for _, units in counts] == [9, 9, 8]


def test_a_sold_out_sale_shows_its_peak_and_time_to_sell_out_over_its_whole_window():
    start = minute_ago(30)
    sale = SaleFactory(start_time=start, end_time=start + timedelta(minutes=20), original_stock=10, current_stock=0)
    for offset, quantity in [(5, 2), (20, 3), (70, 4), (185, 1)]:
        PurchaseFactory(sale=sale, quantity=quantity, created_at=start + timedelta(seconds=offset))

    figures = dashboard.sale_figures(sale)

    assert figures.status == "completed"
    assert len(figures.per_minute) == 20  # the whole window, and not the minute it ended at
    assert figures.peak_per_minute == 5
    assert figures.time_to_sell_out == timedelta(seconds=185)
    assert figures.sell_out_estimate is None
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 0


def test_the_sell_out_estimate_follows_the_recent_rate_and_the_stock():
    start = minute_ago(10)
    sale = SaleFactory(start_time=start, end_time=start + timedelta(hours=2), original_stock=1000, current_stock=900)
    now = start + timedelta(minutes=10)
    # 100 units in the last five minutes: 20 a minute, 900 left, so 45 minutes from now.
    for minute in range(5, 10):
        PurchaseFactory(sale=sale, quantity=20, created_at=start + timedelta(minutes=minute, seconds=1))

    figures = dashboard.sale_figures(sale, now)

    assert figures.recent_per_minute == 20
    assert figures.sell_out_estimate == now + timedelta(minutes=45)


def test_no_sell_out_estimate_when_the_sale_would_end_first():
    start = minute_ago(10)
    sale = SaleFactory(start_time=start, end_time=start + timedelta(minutes=20), original_stock=1000, current_stock=999)
    PurchaseFactory(sale=sale, quantity=1, created_at=start + timedelta(minutes=9))

    assert dashboard.sale_figures(sale, start + timedelta(minutes=10)).sell_out_estimate is None


def test_conversion_counts_each_buyer_once_whether_bought_refused_or_both():
    sale = SaleFactory(original_stock=3)
    bought_then_refused, refused_twice, refused_once = UserFactory(), UserFactory(), UserFactory()
    purchase.purchase(user=bought_then_refused, sale_id=sale.pk, quantity=2)
    purchase.purchase(user=UserFactory(), sale_id=sale.pk, quantity=1)
    refusals.record(sale_id=sale.pk, user_id=bought_then_refused.pk, code="sold_out")
    refusals.record(sale_id=sale.pk, user_id=refused_twice.pk, code="sold_out")
    refusals.record(sale_id=sale.pk, user_id=refused_twice.pk, code="sold_out")
    refusals.record(sale_id=sale.pk, user_id=refused_once.pk, code="user_limit_reached")

    figures = dashboard.sale_figures(FlashSale.objects.get(pk=sale.pk))

    assert (figures.buyers, figures.buyers_tried) == (2, 4)
    assert figures.conversion == 0.5
    assert figures.refusals_by_code == {"sold_out": 3, "user_limit_reached": 1}


def test_refusals_through_the_api_are_tallied_by_code_and_buyer_on_both_paths(client, staff):
    sale = SaleFactory(original_stock=1)
    winner, late = client_for(UserFactory()), client_for(UserFactory())
    order = {"saleId": sale.pk, "quantity": 1}
    bought = winner.post(PURCHASE, order, format="json")
    # The first refusal comes from the database, the next from the gate's fast path (sales.fastpath).
    answers = [late.post(PURCHASE, order, format="json") for _ in range(3)]
    over = winner.post(PURCHASE, order, format="json")
    client.force_login(staff)

    data = client.get(DATA, {"sale": sale.pk}).json()

    assert bought.status_code == 201
    assert [answer.status_code for answer in answers] == [409, 409, 409]
    assert over.status_code == 409
    assert data["sales"][0]["refusals"] == {"sold_out": 4}
    assert (data["sales"][0]["buyers"], data["sales"][0]["buyersTried"]) == (1, 2)
    assert Purchase.objects.filter(sale=sale).count() == 1


def test_replays_anonymous_attempts_and_refusals_naming_no_known_sale_are_not_tallied(api, settings):
    settings.MAX_UNITS_PER_USER = 2
    sale = SaleFactory(original_stock=1, current_stock=0)
    buyer = client_for(UserFactory())
    order = {"saleId": sale.pk, "quantity": 1}
    made_up = sale.pk + 1000

    first = buyer.post(PURCHASE, order, format="json", HTTP_IDEMPOTENCY_KEY="retry-1")
    replayed = buyer.post(PURCHASE, order, format="json", HTTP_IDEMPOTENCY_KEY="retry-1")
    anonymous = api.post(PURCHASE, order, format="json")
    # Any id can be named in these: tallying them would let a buyer fill the cache with made-up sales.
    unknown = buyer.post(PURCHASE, {"saleId": made_up, "quantity": 1}, format="json")
    over_any_cap = buyer.post(PURCHASE, {"saleId": made_up, "quantity": 3}, format="json")
    invalid = buyer.post(PURCHASE, {"saleId": made_up, "quantity": 0}, format="json")

    assert (first.status_code, replayed.status_code, anonymous.status_code) == (409, 409, 401)
    assert replayed["Idempotent-Replayed"] == "true"
    assert [answer.json()["error"]["code"] for answer in (unknown, over_any_cap, invalid)] == [
        "sale_not_found",
        "sale_not_found",  # the limits are the sale's own: an unknown sale has none to be over
        "validation_error",
    ]
    # Over the cap after buying: the database read the sale, so it is tallied.
    live = SaleFactory(original_stock=10)
    bought = buyer.post(PURCHASE, {"saleId": live.pk, "quantity": 2}, format="json")
    over_the_cap = buyer.post(PURCHASE, {"saleId": live.pk, "quantity": 1}, format="json")
    assert (bought.status_code, over_the_cap.json()["error"]["code"]) == (201, "user_limit_reached")
    assert refusals.read(sale_id=live.pk, buyer_ids=[]).by_code == {"user_limit_reached": 1}
    nothing = refusals.RefusalTally(by_code={}, refused_only=0)
    assert refusals.read(sale_id=sale.pk, buyer_ids=[]) == refusals.RefusalTally(
        by_code={"sold_out": 1}, refused_only=1
    )
    assert refusals.read(sale_id=made_up, buyer_ids=[]) == nothing
    assert list(Purchase.objects.values_list("sale_id", "quantity")) == [(live.pk, 2)]


def test_a_refusal_is_answered_as_usual_when_the_tally_cannot_be_written(monkeypatch):
    sale = SaleFactory(original_stock=1, current_stock=0)
    buyer = client_for(UserFactory())

    def cache_down(*args, **kwargs):
        raise ConnectionError("cache down")

    # The cache refusing the tally's writes (either backend), then the tally itself failing.
    monkeypatch.setattr(refusals, "_record_in_django_cache", cache_down)
    monkeypatch.setattr(refusals._RECORD, "script", cache_down)
    refused_while_down = buyer.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")
    monkeypatch.setattr(refusals, "record", cache_down)
    refused_while_broken = buyer.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")

    for answer in (refused_while_down, refused_while_broken):
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "sold_out"
    assert refusals.read(sale_id=sale.pk, buyer_ids=[]) == refusals.RefusalTally(by_code={}, refused_only=0)
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 0
    assert not Purchase.objects.filter(sale=sale).exists()


def test_refusals_waiting_together_for_the_tally_thread_are_counted_as_one_at_a_time():
    sale, other = SaleFactory(), SaleFactory()
    first, second, third = UserFactory(), UserFactory(), UserFactory()
    waiting = [(sale.pk, first.pk, "sold_out")] * 5 + [
        (sale.pk, second.pk, "sold_out"),
        (other.pk, third.pk, "sold_out"),
        (sale.pk, third.pk, "user_limit_reached"),
    ]

    refusals._send_batch(waiting)  # what the thread sends when it finds them queued at once

    assert refusals.read(sale_id=sale.pk, buyer_ids=[first.pk]) == refusals.RefusalTally(
        by_code={"sold_out": 6, "user_limit_reached": 1}, refused_only=2
    )
    assert refusals.read(sale_id=other.pk, buyer_ids=[]) == refusals.RefusalTally(
        by_code={"sold_out": 1}, refused_only=1
    )


def test_an_unreachable_redis_opens_the_cache_breaker_and_the_tally_goes_on_without_it(monkeypatch):
    unreachable = ResilientRedisCache(
        f"redis://127.0.0.1:{free_port()}/0",
        {"OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1, "RETRY_SECONDS": 60}},
    )
    monkeypatch.setattr(refusals, "caches", {"default": unreachable})

    refusals.record(sale_id=1, user_id=1, code="sold_out")
    refusals.flush(timeout=5)  # sent by the tally thread, after the answer
    opened = unreachable.breaker.is_open
    refusals.record(sale_id=1, user_id=2, code="sold_out")  # skipped by the breaker, no wait

    assert opened
    assert refusals.read(sale_id=1, buyer_ids=[1]) == refusals.RefusalTally(by_code={}, refused_only=0)


def test_the_data_is_for_staff_only(client, buyer):
    SaleFactory()
    anonymous = client.get(DATA)
    client.force_login(buyer)
    signed_in_buyer = client.get(DATA)

    for response in (anonymous, signed_in_buyer):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
        assert b"timeline" not in response.content


def test_the_data_lists_the_timeline_and_the_live_sales_figures(client, staff):
    now = timezone.now()
    live = SaleFactory(name="Live <b>drop</b>", original_stock=10)
    upcoming = SaleFactory(name="Later", start_time=now + timedelta(hours=1))
    SaleFactory(name="Long gone", start_time=now - timedelta(days=3), end_time=now - timedelta(days=2))
    PurchaseFactory(sale=live, quantity=2, created_at=now - timedelta(seconds=5))
    FlashSale.objects.filter(pk=live.pk).update(current_stock=8)
    client.force_login(staff)

    response = client.get(DATA)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    data = response.json()
    assert [sale["id"] for sale in data["timeline"]] == [live.pk, upcoming.pk]
    assert [sale["status"] for sale in data["timeline"]] == ["active", "pending"]
    (panel,) = data["sales"]
    assert panel["id"] == live.pk and panel["name"] == "Live <b>drop</b>"
    assert sum(panel["perMinute"]["units"]) == 2 == panel["unitsSold"] == panel["peakPerMinute"]
    assert len(panel["perMinute"]["minuteStarts"]) == len(panel["perMinute"]["units"])
    assert panel["perMinute"]["minuteStarts"][0] == int(live.start_time.replace(second=0, microsecond=0).timestamp())
    assert set(panel) >= {
        "sellOutEstimate",
        "recentPerMinute",
        "conversion",
        "buyers",
        "buyersTried",
        "refusals",
        "timeToSellOutSeconds",
        "soldOutAt",
    }


def test_one_sale_of_any_status_can_be_shown_and_an_unknown_one_is_404(client, staff):
    ended = SaleFactory(start_time=minute_ago(90), end_time=minute_ago(30))
    client.force_login(staff)

    shown = client.get(DATA, {"sale": ended.pk}).json()
    page = client.get(PAGE, {"sale": ended.pk})

    assert [sale["id"] for sale in shown["sales"]] == [ended.pk]
    assert len(shown["sales"][0]["perMinute"]["units"]) == 60
    assert page.status_code == 200 and ended.name in page.content.decode()
    assert client.get(DATA, {"sale": ended.pk + 1000}).status_code == 404
    assert client.get(DATA, {"sale": "x"}).status_code == 404


def test_the_page_escapes_names_loads_only_its_own_scripts_and_is_linked_from_the_index(client, staff):
    SaleFactory(name="</script><script>alert(1)</script>")
    client.force_login(staff)

    page = client.get(PAGE)
    index = client.get(reverse("admin:index"))

    html = page.content.decode()
    assert page.status_code == 200
    assert "<script>alert(1)" not in html
    assert "sales/vendor/uplot-1.6.32/uPlot.iife.min.js" in html and "sales/dashboard.js" in html
    assert "script-src 'self'" in page["Content-Security-Policy"]
    assert f'href="{PAGE}"' in index.content.decode()
