"""The flash sale admin: pages render for staff, edits never overwrite purchases, stock actions are safe."""

import csv
import io
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.db.models import F, Sum
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from live import events
from sales import purchase, services
from sales.exceptions import SaleNotActive
from sales.models import FlashSale, Purchase
from tests.admin_pages import form_data, split_datetime
from tests.factories import PurchaseFactory, SaleFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:sales_flashsale_changelist")
ADD = reverse("admin:sales_flashsale_add")
PURCHASES = reverse("admin:sales_purchase_changelist")
PURCHASES_CSV = reverse("admin:sales_purchase_export")
RELOAD = "changed while you were editing, reload"


def change_url(sale) -> str:
    return reverse("admin:sales_flashsale_change", args=[sale.pk])


def add_units_url(sale) -> str:
    return reverse("admin:sales_flashsale_add_units", args=[sale.pk])


def end_url(sale) -> str:
    return reverse("admin:sales_flashsale_end", args=[sale.pk])


@pytest.fixture
def browser(client, staff):
    """A staff member signed into the admin (staff only, no model permissions granted)."""
    client.force_login(staff)
    return client


def buy(sale, quantity: int = 1, user=None) -> Purchase:
    result = purchase.purchase(user=user or UserFactory(), sale_id=sale.pk, quantity=quantity)
    return Purchase.objects.get(pk=result.purchase_id)


def units_bought(sale) -> int:
    return Purchase.objects.filter(sale=sale).aggregate(units=Sum("quantity"))["units"] or 0


def open_change_form(browser, sale) -> dict:
    page = browser.get(change_url(sale))
    assert page.status_code == 200
    return form_data(page.content.decode(), "flashsale_form")


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def with_datetime(data: dict, field: str, moment) -> dict:
    for part, value in split_datetime(moment).items():
        data[f"{field}_{part}"] = value
    return data


# --- pages render ------------------------------------------------------------------------------


def test_staff_changelist_shows_status_stock_units_sold_and_purchase_counts(browser):
    now = timezone.now()
    pending = SaleFactory(name="Pending drop", start_time=now + timedelta(hours=1), original_stock=5)
    live = SaleFactory(name="Live drop", original_stock=10)
    ended = SaleFactory(name="Old drop", start_time=now - timedelta(days=2), end_time=now - timedelta(days=1))
    buy(live, 2)
    buy(live, 1)

    page = browser.get(CHANGELIST)

    assert page.status_code == 200
    rows = {sale.name: sale for sale in page.context["cl"].result_list}
    assert set(rows) == {pending.name, live.name, ended.name}
    assert (rows["Live drop"].purchase_count, rows["Live drop"].sold) == (2, 3)
    assert (rows["Pending drop"].purchase_count, rows["Pending drop"].sold) == (0, 0)
    html = page.content.decode()
    assert "7 / 10" in html and "5 / 5" in html
    for label in ("Pending", "Active", "Completed"):
        assert f">{label}</span>" in html
    assert FlashSale.objects.get(pk=live.pk).current_stock == 7


def test_status_filter_is_derived_from_the_clock_and_the_stock(browser):
    now = timezone.now()
    pending = SaleFactory(start_time=now + timedelta(minutes=5))
    live = SaleFactory()
    sold_out = SaleFactory(original_stock=3, current_stock=0)
    ended = SaleFactory(start_time=now - timedelta(hours=3), end_time=now - timedelta(seconds=1))

    def listed(status):
        page = browser.get(CHANGELIST, {"status": status})
        assert page.status_code == 200
        return {sale.pk for sale in page.context["cl"].result_list}

    assert listed("pending") == {pending.pk}
    assert listed("active") == {live.pk}
    assert listed("completed") == {sold_out.pk, ended.pk}


def test_changelist_search_and_date_drilldown(browser):
    now = timezone.now()
    sneakers = SaleFactory(name="Sneakers", start_time=now - timedelta(minutes=1))
    SaleFactory(name="Watches", start_time=now - timedelta(days=400), end_time=now - timedelta(days=399))

    searched = browser.get(CHANGELIST, {"q": "sneak"})
    drilled = browser.get(CHANGELIST, {"start_time__year": now.year, "start_time__month": now.month})

    assert [sale.pk for sale in searched.context["cl"].result_list] == [sneakers.pk]
    assert sneakers.pk in {sale.pk for sale in drilled.context["cl"].result_list}
    assert "Watches" not in drilled.content.decode()


def test_changelist_queries_do_not_grow_with_the_number_of_sales(browser):
    def queries_for_changelist():
        with CaptureQueriesContext(connection) as captured:
            assert browser.get(CHANGELIST).status_code == 200
        return len(captured)

    for _ in range(2):
        PurchaseFactory(sale=SaleFactory())
    few = queries_for_changelist()
    for _ in range(10):
        sale = SaleFactory()
        PurchaseFactory.create_batch(3, sale=sale)

    assert queries_for_changelist() == few


def test_user_content_is_escaped_on_admin_pages(browser):
    sale = SaleFactory(name="<script>alert('sale')</script>")
    PurchaseFactory(sale=sale, user=UserFactory(name="<img src=x onerror=alert(1)>"))

    pages = [browser.get(CHANGELIST), browser.get(change_url(sale)), browser.get(PURCHASES)]

    for page in pages:
        html = page.content.decode()
        assert page.status_code == 200
        assert "<script>alert('sale')" not in html
        assert "<img src=x onerror" not in html
        assert "&lt;script&gt;" in html


def test_admin_index_lists_sales_and_purchases_for_staff(browser):
    page = browser.get(reverse("admin:index"))

    assert page.status_code == 200
    html = page.content.decode()
    assert CHANGELIST in html and PURCHASES in html
    # Users and tokens need Django permissions, which a plain staff member does not have.
    assert reverse("admin:accounts_user_changelist") not in html


@pytest.mark.parametrize("path", [CHANGELIST, ADD, PURCHASES, "change"])
def test_non_staff_and_anonymous_are_redirected_to_the_admin_login(client, buyer, path):
    url = change_url(SaleFactory()) if path == "change" else path
    anonymous = client.get(url)
    client.force_login(buyer)
    signed_in_buyer = client.get(url)

    for response in (anonymous, signed_in_buyer):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_a_non_staff_post_to_the_change_form_changes_nothing(client, buyer):
    sale = SaleFactory(name="Original")
    client.force_login(buyer)

    response = client.post(change_url(sale), {"name": "Hijacked"})

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert FlashSale.objects.get(pk=sale.pk).name == "Original"


# --- adding a sale -----------------------------------------------------------------------------


def test_add_page_creates_a_sale_with_current_stock_equal_to_original(
    browser, monkeypatch, django_capture_on_commit_callbacks
):
    announced = []
    monkeypatch.setattr(events, "push_sale_changed", lambda **kwargs: announced.append(kwargs))
    start = (timezone.now() + timedelta(hours=1)).replace(microsecond=0)
    assert browser.get(ADD).status_code == 200
    data = {"name": "Launch", "original_stock": "50", "_save": "Save"}
    with_datetime(data, "start_time", start)
    with_datetime(data, "end_time", start + timedelta(hours=2))

    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(ADD, data)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    sale = FlashSale.objects.get()
    assert (sale.name, sale.original_stock, sale.current_stock, sale.version) == ("Launch", 50, 50, 1)
    assert (sale.start_time, sale.end_time) == (start, start + timedelta(hours=2))
    assert announced == [{"sale_id": sale.pk}]


def test_add_refuses_an_end_before_the_start_and_zero_stock_with_clear_messages(browser):
    start = timezone.now() + timedelta(hours=1)
    data = {"name": "Broken", "original_stock": "0", "_save": "Save"}
    with_datetime(data, "start_time", start)
    with_datetime(data, "end_time", start - timedelta(minutes=5))

    response = browser.post(ADD, data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["end_time"] == ["The sale must end after it starts."]
    assert errors["original_stock"] == ["A sale needs at least one unit."]
    assert not FlashSale.objects.exists()


# --- editing a sale ----------------------------------------------------------------------------


def test_change_page_carries_the_version_and_shows_the_newest_purchases_first(browser):
    sale = SaleFactory(original_stock=100)
    purchases = [PurchaseFactory(sale=sale) for _ in range(25)]

    page = browser.get(change_url(sale))

    assert page.status_code == 200
    assert form_data(page.content.decode(), "flashsale_form")["expected_version"] == str(sale.version)
    shown = [form.instance.pk for form in page.context["inline_admin_formsets"][0].formset.forms]
    newest_first = sorted(purchases, key=lambda p: (p.created_at, p.pk), reverse=True)
    assert shown == [p.pk for p in newest_first[:20]]
    html = page.content.decode()
    assert add_units_url(sale) in html and end_url(sale) in html


def test_editing_a_pending_sale_saves_the_changes_and_bumps_the_version(browser):
    start = timezone.now() + timedelta(days=1)
    sale = SaleFactory(name="Draft", start_time=start, end_time=start + timedelta(hours=1), original_stock=40)
    data = open_change_form(browser, sale)
    data["name"] = "Final"
    with_datetime(data, "end_time", start + timedelta(hours=3))

    response = browser.post(change_url(sale), data)

    assert response.status_code == 302
    sale_after = FlashSale.objects.get(pk=sale.pk)
    assert sale_after.name == "Final"
    assert sale_after.end_time == (start + timedelta(hours=3)).replace(microsecond=0)
    assert sale_after.start_time == sale.start_time  # untouched, microseconds and all
    assert (sale_after.version, sale_after.current_stock) == (sale.version + 1, 40)


def test_an_edit_during_purchases_is_saved_and_keeps_every_purchase(browser):
    sale = SaleFactory(name="Sneakers", original_stock=10)
    data = open_change_form(browser, sale)
    bought = buy(sale, 3)  # lands while the form is open: not a staff edit, so the form is not stale
    data["name"] = "Sneakers (restocked)"
    data["original_stock"] = "12"

    response = browser.post(change_url(sale), data)

    assert response.status_code == 302
    sale_now = FlashSale.objects.get(pk=sale.pk)
    # The stock edit is a delta over the purchase: 12 - 3 sold, never the form's stale 10 + 2.
    assert (sale_now.name, sale_now.original_stock, sale_now.current_stock) == ("Sneakers (restocked)", 12, 9)
    assert sale_now.version == sale.version + 1
    assert list(Purchase.objects.filter(sale=sale)) == [bought]


def test_a_stale_edit_after_another_staff_edit_writes_nothing_and_says_reload(browser):
    sale = SaleFactory(name="Sneakers", original_stock=10)
    data = open_change_form(browser, sale)
    services.update_sale(sale_id=sale.pk, expected_version=sale.version, changes={"name": "Sneakers II"})
    data["name"] = "Sneakers (restocked)"
    data["original_stock"] = "12"

    response = browser.post(change_url(sale), data)

    assert response.status_code == 200
    assert RELOAD in response.content.decode()
    assert any(RELOAD in error for error in response.context["adminform"].form.non_field_errors())
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert (sale_now.name, sale_now.original_stock, sale_now.current_stock) == ("Sneakers II", 10, 10)
    assert sale_now.version == sale.version + 1


def test_a_refused_form_shows_the_sale_as_stored_and_its_purchases_as_they_are_now(browser):
    sale = SaleFactory(name="Sneakers", original_stock=100)
    for _ in range(20):
        buy(sale)
    data = open_change_form(browser, sale)
    latest = buy(sale, 2)  # pushes the oldest shown purchase out of the inline's window
    FlashSale.objects.filter(pk=sale.pk).update(version=F("version") + 1)  # another staff edit
    data["name"] = "Renamed"

    response = browser.post(change_url(sale), data)

    assert response.status_code == 200
    assert response.context["original"].name == "Sneakers"
    assert "<h2>Sneakers</h2>" in response.content.decode()
    shown = [form.instance for form in response.context["inline_admin_formsets"][0].formset.forms]
    assert len(shown) == 20 and all(purchase.pk for purchase in shown)
    assert shown[0] == latest
    assert FlashSale.objects.get(pk=sale.pk).name == "Sneakers"


def test_an_edit_refused_at_save_after_validating_writes_nothing_and_says_reload(browser, monkeypatch):
    sale = SaleFactory(name="Sneakers", original_stock=10)
    data = open_change_form(browser, sale)
    data["name"] = "Renamed"
    real_update = services.update_sale

    def another_write_lands_first(**kwargs):
        # The form validated against the current version; another write bumps it before the save.
        # (Here it shares the admin's transaction; test_admin_concurrency races a real purchase.)
        FlashSale.objects.filter(pk=sale.pk).update(version=F("version") + 1)
        return real_update(**kwargs)

    monkeypatch.setattr(services, "update_sale", another_write_lands_first)

    response = browser.post(change_url(sale), data, follow=True)

    assert response.redirect_chain == [(change_url(sale), 302)]
    assert any(RELOAD in message for message in messages_of(response))
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert (sale_now.name, sale_now.current_stock) == ("Sneakers", 10)
    assert not LogEntry.objects.exists()


def test_submitting_an_untouched_form_after_purchases_never_restores_the_stale_stock(browser):
    sale = SaleFactory(original_stock=10)
    data = open_change_form(browser, sale)
    buy(sale, 4)
    buy(sale, 1)
    before_submit = FlashSale.objects.get(pk=sale.pk)

    response = browser.post(change_url(sale), data)

    assert response.status_code == 302
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert sale_now.current_stock == 5
    assert sale_now.original_stock - sale_now.current_stock == units_bought(sale)
    # Nothing was written: the times keep their microseconds, the version is the purchases'.
    assert (sale_now.start_time, sale_now.end_time) == (sale.start_time, sale.end_time)
    assert sale_now.version == before_submit.version


def test_shortening_a_live_sale_is_refused_with_a_message(browser):
    sale = SaleFactory()
    data = open_change_form(browser, sale)
    with_datetime(data, "end_time", sale.end_time - timedelta(minutes=30))

    response = browser.post(change_url(sale), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["end_time"] == [
        "A live sale cannot be shortened; end it explicitly instead."
    ]
    assert FlashSale.objects.get(pk=sale.pk).end_time == sale.end_time


def test_moving_the_start_of_a_started_sale_is_refused(browser):
    sale = SaleFactory()
    # With no purchase yet it could move back to the future (tests/test_admin_sales_staff.py).
    buy(sale)
    data = open_change_form(browser, sale)
    with_datetime(data, "start_time", sale.start_time + timedelta(minutes=10))

    response = browser.post(change_url(sale), data)

    assert response.status_code == 200
    assert "cannot have its start moved" in response.content.decode()
    assert FlashSale.objects.get(pk=sale.pk).start_time == sale.start_time


def test_reducing_stock_below_the_units_sold_is_refused_with_a_message(browser):
    sale = SaleFactory(original_stock=10)
    buy(sale, 4)
    data = open_change_form(browser, sale)
    data["original_stock"] = "3"

    response = browser.post(change_url(sale), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["original_stock"] == [
        "Stock cannot go below the units already sold."
    ]
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert (sale_now.original_stock, sale_now.current_stock) == (10, 6)


def test_a_new_original_stock_moves_current_stock_by_the_same_delta(browser):
    sale = SaleFactory(original_stock=10)
    buy(sale, 4)
    data = open_change_form(browser, sale)
    data["original_stock"] = "15"

    response = browser.post(change_url(sale), data)

    assert response.status_code == 302
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert (sale_now.original_stock, sale_now.current_stock) == (15, 11)
    assert sale_now.original_stock - sale_now.current_stock == units_bought(sale)


def test_saving_works_when_new_purchases_push_the_shown_ones_out_of_the_inline(browser):
    start = timezone.now() + timedelta(hours=2)
    sale = SaleFactory(start_time=start, end_time=start + timedelta(hours=1))
    PurchaseFactory.create_batch(20, sale=sale)
    data = open_change_form(browser, sale)
    # Inserted directly (no version bump), so only the inline's window moves under the form.
    PurchaseFactory.create_batch(5, sale=sale)
    data["name"] = "Renamed"

    response = browser.post(change_url(sale), data)

    assert response.status_code == 302
    assert FlashSale.objects.get(pk=sale.pk).name == "Renamed"
    assert Purchase.objects.filter(sale=sale).count() == 25


# --- stock actions -----------------------------------------------------------------------------


def test_add_units_during_a_live_sale_keeps_original_minus_current_equal_to_units_bought(
    browser, monkeypatch, django_capture_on_commit_callbacks
):
    announced = []
    monkeypatch.setattr(events, "push_stock_changed", lambda **kwargs: announced.append(kwargs))
    sale = SaleFactory(original_stock=10)
    buy(sale, 3)
    page = browser.get(add_units_url(sale))
    assert page.status_code == 200 and "7 / 10" in page.content.decode()
    buy(sale, 2)  # after the page was loaded

    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(add_units_url(sale), {"units": "5"}, follow=True)

    assert response.redirect_chain == [(change_url(sale), 302)]
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert (sale_now.original_stock, sale_now.current_stock) == (15, 10)
    assert sale_now.original_stock - sale_now.current_stock == units_bought(sale) == 5
    assert announced == [{"sale_id": sale.pk, "current_stock": 10, "stock_version": sale_now.stock_version}]
    assert "stock is now 10 / 15" in " ".join(messages_of(response))


def test_add_units_refuses_less_than_one_unit_and_changes_nothing(browser):
    sale = SaleFactory(original_stock=10)

    response = browser.post(add_units_url(sale), {"units": "0"})

    assert response.status_code == 200
    assert response.context["form"].errors["units"] == ["Add at least one unit."]
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert (sale_now.original_stock, sale_now.current_stock, sale_now.version) == (10, 10, sale.version)


def test_end_sale_now_closes_a_live_sale(browser, monkeypatch, django_capture_on_commit_callbacks):
    announced = []
    monkeypatch.setattr(events, "push_sale_changed", lambda **kwargs: announced.append(kwargs))
    sale = SaleFactory()
    confirm = browser.get(end_url(sale))
    assert confirm.status_code == 200 and "Yes, end it now" in confirm.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(end_url(sale))

    assert response.status_code == 302
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert sale_now.end_time <= timezone.now()
    assert sale_now.status == "completed"
    assert announced == [{"sale_id": sale.pk}]
    with pytest.raises(SaleNotActive):
        buy(sale_now)


def test_ending_a_sale_that_is_not_live_is_refused_with_a_message(browser):
    start = timezone.now() + timedelta(hours=1)
    sale = SaleFactory(start_time=start, end_time=start + timedelta(hours=1))
    assert "not live" in browser.get(end_url(sale)).content.decode()

    response = browser.post(end_url(sale), follow=True)

    assert "Only a live sale can be ended." in messages_of(response)
    assert FlashSale.objects.get(pk=sale.pk).end_time == sale.end_time


def test_end_now_action_asks_first_listing_the_sales_and_ends_nothing_until_confirmed(browser):
    start = timezone.now() + timedelta(hours=1)
    live = SaleFactory(name="Live", original_stock=50, current_stock=45)
    pending = SaleFactory(name="Later", start_time=start, end_time=start + timedelta(hours=1))

    asked = browser.post(CHANGELIST, {"action": "end_now", "_selected_action": [live.pk, pending.pk]})

    assert asked.status_code == 200
    html = asked.content.decode()
    assert "End the selected sales now?" in html
    assert f'<a href="{change_url(live)}">Live</a>: 45 / 50 left' in html
    assert '<ul id="sales-left-alone">\n  <li>Later</li>' in html
    assert FlashSale.objects.get(pk=live.pk).end_time == live.end_time
    assert not LogEntry.objects.exists()

    # "No, take me back" changes nothing either: it only goes back in the browser's history.
    assert 'class="button cancel-link">No, take me back</a>' in html


def test_a_bulk_end_of_sales_none_of_them_live_needs_no_confirmation(browser):
    start = timezone.now() + timedelta(hours=1)
    pending = SaleFactory(name="Later", start_time=start, end_time=start + timedelta(hours=1))

    response = browser.post(CHANGELIST, {"action": "end_now", "_selected_action": [pending.pk]}, follow=True)

    assert messages_of(response) == ["Not live, left alone: Later."]
    assert FlashSale.objects.get(pk=pending.pk).end_time == pending.end_time


def test_end_now_action_ends_the_live_sales_selected_and_leaves_the_others(browser):
    start = timezone.now() + timedelta(hours=1)
    live = SaleFactory(name="Live")
    pending = SaleFactory(name="Later", start_time=start, end_time=start + timedelta(hours=1))
    asked = browser.post(CHANGELIST, {"action": "end_now", "_selected_action": [live.pk, pending.pk]})

    # What the confirmation page's "Yes, end them now" submits.
    confirmed = form_data(asked.content.decode().replace("<form method", '<form id="confirm" method'), "confirm")
    response = browser.post(CHANGELIST, confirmed, follow=True)

    assert confirmed["post"] == "yes" and confirmed["_selected_action"] == [str(live.pk), str(pending.pk)]
    assert response.status_code == 200
    assert FlashSale.objects.get(pk=live.pk).end_time <= timezone.now()
    assert FlashSale.objects.get(pk=pending.pk).end_time == pending.end_time
    assert messages_of(response) == ["Ended 1 sale: Live.", "Not live, left alone: Later."]


def test_a_live_sale_cannot_be_deleted_but_a_pending_one_can(browser):
    start = timezone.now() + timedelta(hours=1)
    live = SaleFactory()
    pending = SaleFactory(start_time=start, end_time=start + timedelta(hours=1))

    refused = browser.post(reverse("admin:sales_flashsale_delete", args=[live.pk]), {"post": "yes"})
    deleted = browser.post(reverse("admin:sales_flashsale_delete", args=[pending.pk]), {"post": "yes"})

    assert refused.status_code == 403
    assert deleted.status_code == 302
    assert list(FlashSale.objects.values_list("pk", flat=True)) == [live.pk]


def test_deleting_a_sale_in_the_admin_tells_the_home_pages_after_commit(
    browser, monkeypatch, django_capture_on_commit_callbacks
):
    announced = []
    monkeypatch.setattr(events, "push_sale_deleted", lambda **kwargs: announced.append(kwargs))
    start = timezone.now() + timedelta(hours=1)
    pending = SaleFactory(start_time=start, end_time=start + timedelta(hours=1))

    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(reverse("admin:sales_flashsale_delete", args=[pending.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not FlashSale.objects.exists()
    assert announced == [{"sale_id": pending.pk}]


def test_a_sale_with_purchases_cannot_be_deleted(browser):
    now = timezone.now()
    sale = SaleFactory(start_time=now - timedelta(days=2), end_time=now - timedelta(days=1))
    PurchaseFactory(sale=sale)

    response = browser.post(reverse("admin:sales_flashsale_delete", args=[sale.pk]), {"post": "yes"})

    assert response.status_code == 200
    assert "Cannot delete flash sale" in response.content.decode()
    assert response.context["protected"]
    assert FlashSale.objects.filter(pk=sale.pk).exists()


# --- purchases ---------------------------------------------------------------------------------


def test_purchase_list_filters_by_sale_and_searches_by_buyer_email(browser):
    sneakers, watches = SaleFactory(name="Sneakers"), SaleFactory(name="Watches")
    ada = UserFactory(email="ada@example.com")
    mine = [buy(sneakers, 2, user=ada), buy(watches, 1, user=ada)]
    other = buy(sneakers, 1)

    by_sale = browser.get(PURCHASES, {"sale__id__exact": sneakers.pk})
    by_email = browser.get(PURCHASES, {"q": "ADA@example"})

    assert by_sale.status_code == by_email.status_code == 200
    assert {p.pk for p in by_sale.context["cl"].result_list} == {mine[0].pk, other.pk}
    assert {p.pk for p in by_email.context["cl"].result_list} == {p.pk for p in mine}
    assert "ada@example.com" in by_email.content.decode()


def test_purchases_are_read_only_in_the_admin(browser):
    purchase = PurchaseFactory(quantity=2)
    url = reverse("admin:sales_purchase_change", args=[purchase.pk])

    view = browser.get(url)
    edit = browser.post(url, {"quantity": "5", "user": purchase.user_id, "sale": purchase.sale_id})
    add = browser.get(reverse("admin:sales_purchase_add"))
    delete = browser.post(reverse("admin:sales_purchase_delete", args=[purchase.pk]), {"post": "yes"})

    assert view.status_code == 200
    assert (edit.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    assert Purchase.objects.get(pk=purchase.pk).quantity == 2


def read_csv(response) -> list[dict]:
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="purchases-')
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_csv_export_streams_the_filtered_list_newest_first(browser):
    sale, other_sale = SaleFactory(name="Sneakers"), SaleFactory()
    first = buy(sale, 2, user=UserFactory(email="ada@example.com", name="Ada"))
    second = buy(sale, 1)
    buy(other_sale, 1)
    assert PURCHASES_CSV in browser.get(PURCHASES).content.decode()

    rows = read_csv(browser.get(PURCHASES_CSV, {"sale__id__exact": sale.pk}))

    assert [int(row["purchase_id"]) for row in rows] == [second.pk, first.pk]
    assert rows[1] == {
        "purchase_id": str(first.pk),
        "sale_id": str(sale.pk),
        "sale_name": "Sneakers",
        "user_id": str(first.user_id),
        "user_email": "ada@example.com",
        "user_name": "Ada",
        "quantity": "2",
        "created_at": first.created_at.isoformat(),
        "status": "confirmed",
        "expires_at": "",
        "confirmed_at": "",
        "released_at": "",
    }


def test_csv_export_under_asgi_streams_rows_from_an_async_iterator(staff, monkeypatch):
    # Daphne serves the admin through ASGI, where a synchronous iterator would be read whole into
    # memory before sending; the export must hand ASGI an asynchronous one, in several chunks.
    monkeypatch.setattr("sales.admin_csv.CHUNK_SIZE", 2)
    sale = SaleFactory()
    purchases = PurchaseFactory.create_batch(5, sale=sale)

    async def download():
        client = AsyncClient()
        await client.aforce_login(staff)
        response = await client.get(PURCHASES_CSV, {"sale__id__exact": sale.pk})
        assert response.streaming and hasattr(response.streaming_content, "__aiter__")
        return [part async for part in response]

    parts = async_to_sync(download)()

    rows = list(csv.DictReader(io.StringIO(b"".join(parts).decode())))
    newest_first = sorted(purchases, key=lambda p: (p.created_at, p.pk), reverse=True)
    assert [int(row["purchase_id"]) for row in rows] == [p.pk for p in newest_first]
    assert len(parts) == 1 + 3  # the header, then chunks of two rows


def test_csv_export_neutralises_spreadsheet_formulas_in_user_content(browser):
    PurchaseFactory(user=UserFactory(name='=HYPERLINK("http://evil.example","x")'), sale=SaleFactory(name="+1"))

    rows = read_csv(browser.get(PURCHASES_CSV))

    assert rows[0]["user_name"] == '\'=HYPERLINK("http://evil.example","x")'
    assert rows[0]["sale_name"] == "'+1"


def test_export_selected_action_returns_only_the_selected_purchases(browser):
    chosen, _ = PurchaseFactory(), PurchaseFactory()

    response = browser.post(PURCHASES, {"action": "export_selected", "_selected_action": [chosen.pk]})

    assert [int(row["purchase_id"]) for row in read_csv(response)] == [chosen.pk]


def test_csv_export_needs_a_staff_login(client, buyer):
    PurchaseFactory()
    client.force_login(buyer)

    response = client.get(PURCHASES_CSV)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_the_purchases_list_filters_by_status_and_exports_it(browser):
    sale = SaleFactory(hold_seconds=60)
    confirmed = PurchaseFactory(sale=sale)
    held = PurchaseFactory(sale=sale, status="held", expires_at=timezone.now() + timedelta(minutes=1))
    PurchaseFactory(sale=sale, status="expired", expires_at=timezone.now(), released_at=timezone.now())

    page = browser.get(PURCHASES, {"status__exact": "held"})
    rows = read_csv(browser.get(PURCHASES_CSV, {"status__exact": "held"}))
    everything = read_csv(browser.get(PURCHASES_CSV))

    assert page.status_code == 200
    assert [row.pk for row in page.context["cl"].result_list] == [held.pk]
    assert [(int(row["purchase_id"]), row["status"]) for row in rows] == [(held.pk, "held")]
    assert rows[0]["expires_at"] == held.expires_at.isoformat()
    assert sorted(row["status"] for row in everything) == ["confirmed", "expired", "held"]
    assert confirmed.pk in {int(row["purchase_id"]) for row in everything}
