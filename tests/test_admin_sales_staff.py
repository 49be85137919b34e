"""Staff running a drop from the admin: a past start needs an explicit "start now", clones, the buyer
page (link and preview before launch), the add form's minute shortcuts, and a history that says what
changed from what, for admin and API edits alike."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.urls import reverse
from django.utils import timezone

from sales import services
from sales.models import FlashSale, Purchase
from tests.admin_pages import form_data, split_datetime
from tests.conftest import client_for
from tests.factories import PurchaseFactory, SaleFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:sales_flashsale_changelist")
ADD = reverse("admin:sales_flashsale_add")


def change_url(sale) -> str:
    return reverse("admin:sales_flashsale_change", args=[sale.pk])


def clone_url(sale) -> str:
    return reverse("admin:sales_flashsale_clone", args=[sale.pk])


def preview_url(sale) -> str:
    return reverse("admin:sales_flashsale_preview", args=[sale.pk])


def history_url(sale) -> str:
    return reverse("admin:sales_flashsale_history", args=[sale.pk])


@pytest.fixture
def browser(client, staff):
    client.force_login(staff)
    return client


def open_change_form(browser, sale) -> dict:
    page = browser.get(change_url(sale))
    assert page.status_code == 200
    return form_data(page.content.decode(), "flashsale_form")


def with_datetime(data: dict, field: str, moment) -> dict:
    for part, value in split_datetime(moment).items():
        data[f"{field}_{part}"] = value
    return data


def stored(sale) -> tuple:
    fresh = FlashSale.objects.get(pk=sale.pk)
    return (fresh.name, fresh.start_time, fresh.end_time, fresh.original_stock, fresh.current_stock, fresh.version)


def pending_sale(**kwargs) -> FlashSale:
    start = timezone.now() + timedelta(hours=1)
    return SaleFactory(start_time=start, end_time=start + timedelta(hours=1), **kwargs)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- no one-typo launches ---------------------------------------------------------------------------


def test_a_past_start_typed_for_a_pending_sale_is_refused_and_offers_start_now_by_name(browser):
    sale = pending_sale(name="Sneakers drop")
    before = stored(sale)
    page = browser.get(change_url(sale)).content.decode()
    assert 'type="hidden" name="start_now"' in page  # hidden until needed
    data = form_data(page, "flashsale_form")
    with_datetime(data, "start_time", timezone.now() - timedelta(minutes=3))

    response = browser.post(change_url(sale), data)

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "saving it would start “Sneakers drop” at once" in form.errors["start_time"][0]
    html = response.content.decode()
    assert 'type="checkbox" name="start_now"' in html
    assert 'for="id_start_now">Yes, start “Sneakers drop” now</label>' in html
    assert stored(sale) == before
    assert not LogEntry.objects.exists()


def test_ticking_start_now_starts_the_pending_sale_at_once(browser):
    sale = pending_sale(name="Sneakers drop")
    data = open_change_form(browser, sale)
    with_datetime(data, "start_time", timezone.now() - timedelta(minutes=3))
    data["start_now"] = "on"
    asked = timezone.now()

    response = browser.post(change_url(sale), data)

    answered = timezone.now()
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert asked <= sale_now.start_time <= answered
    assert sale_now.status == "active"
    assert (sale_now.end_time, sale_now.version) == (sale.end_time, sale.version + 1)
    entry = LogEntry.objects.get()
    assert entry.get_change_message().startswith(f"Changed start: {sale.start_time:%Y-%m-%d %H:%M:%S} UTC → ")


def test_a_ticked_start_now_stays_visible_when_the_form_comes_back_for_another_error(browser):
    sale = pending_sale(name="Sneakers drop", original_stock=10)
    data = open_change_form(browser, sale)
    with_datetime(data, "start_time", timezone.now() - timedelta(minutes=3))
    data["start_now"] = "on"
    with_datetime(data, "end_time", timezone.now() - timedelta(minutes=1))  # ends before "now"

    response = browser.post(change_url(sale), data)

    assert response.status_code == 200
    html = response.content.decode()
    assert 'type="checkbox" name="start_now"' in html and "checked" in html.split('name="start_now"')[1][:80]
    assert 'type="hidden" name="start_now"' not in html
    assert FlashSale.objects.get(pk=sale.pk).status == "pending"


def test_an_admin_edit_with_a_future_start_needs_no_confirmation(browser):
    sale = pending_sale()
    later = (timezone.now() + timedelta(minutes=30)).replace(microsecond=0)
    data = open_change_form(browser, sale)
    with_datetime(data, "start_time", later)

    response = browser.post(change_url(sale), data)

    assert response.status_code == 302
    assert FlashSale.objects.get(pk=sale.pk).start_time == later


def test_a_live_sale_with_no_purchase_can_be_moved_back_to_pending_in_the_admin(browser):
    sale = SaleFactory()
    later = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)
    data = open_change_form(browser, sale)
    with_datetime(data, "start_time", later)
    with_datetime(data, "end_time", later + timedelta(hours=1))

    response = browser.post(change_url(sale), data)

    assert response.status_code == 302
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert (sale_now.start_time, sale_now.status) == (later, "pending")


def test_creating_a_sale_that_starts_in_the_past_is_unchanged_in_the_admin(browser):
    start = (timezone.now() - timedelta(minutes=1)).replace(microsecond=0)
    data = {"name": "Now", "original_stock": "5", "_save": "Save"}
    with_datetime(data, "start_time", start)
    with_datetime(data, "end_time", start + timedelta(hours=1))

    response = browser.post(ADD, data)

    assert response.status_code == 302
    assert FlashSale.objects.get().start_time == start


# --- the add form's shortcuts -----------------------------------------------------------------------


def test_starts_in_and_runs_for_fill_the_start_and_end(browser):
    data = {"name": "Quick", "original_stock": "50", "starts_in_minutes": "10", "duration_minutes": "90"}
    asked = timezone.now().replace(microsecond=0)

    response = browser.post(ADD, data)

    answered = timezone.now()
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    sale = FlashSale.objects.get()
    assert asked + timedelta(minutes=10) <= sale.start_time <= answered + timedelta(minutes=10)
    assert sale.end_time - sale.start_time == timedelta(minutes=90)
    assert (sale.original_stock, sale.current_stock, sale.status) == (50, 50, "pending")


def test_a_duration_fills_the_end_after_a_typed_start(browser):
    start = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    data = {"name": "Typed", "original_stock": "5", "duration_minutes": "45"}
    with_datetime(data, "start_time", start)

    response = browser.post(ADD, data)

    assert response.status_code == 302
    sale = FlashSale.objects.get()
    assert (sale.start_time, sale.end_time) == (start, start + timedelta(minutes=45))


def test_an_add_form_without_times_or_shortcuts_says_what_is_missing(browser):
    response = browser.post(ADD, {"name": "Timeless", "original_stock": "5"})

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "minutes until it starts" in errors["start_time"][0]
    assert "how many minutes the sale runs" in errors["end_time"][0]
    assert not FlashSale.objects.exists()


def test_the_add_page_shows_the_shortcuts_and_the_change_page_does_not(browser):
    sale = pending_sale()

    add_page = browser.get(ADD).content.decode()
    change_page = browser.get(change_url(sale)).content.decode()

    assert 'name="starts_in_minutes"' in add_page and 'name="duration_minutes"' in add_page
    assert "starts_in_minutes" not in change_page


def test_stock_over_the_cap_is_refused_in_the_admin(browser):
    start = timezone.now() + timedelta(hours=1)
    data = {"name": "Huge", "original_stock": str(2**31), "_save": "Save"}
    with_datetime(data, "start_time", start)
    with_datetime(data, "end_time", start + timedelta(hours=1))
    sale = SaleFactory(original_stock=services.MAX_STOCK - 5)

    added = browser.post(ADD, data)
    restocked = browser.post(reverse("admin:sales_flashsale_add_units", args=[sale.pk]), {"units": "6"})

    assert added.status_code == 200
    assert "original_stock" in added.context["adminform"].form.errors
    assert restocked.status_code == 200
    assert any("at most 5 more" in message for message in messages_of(restocked))
    assert list(FlashSale.objects.values_list("pk", "original_stock")) == [(sale.pk, services.MAX_STOCK - 5)]


# --- clone ------------------------------------------------------------------------------------------


def test_cloning_a_sale_asks_first_then_makes_a_pending_copy(browser, staff):
    sale = SaleFactory(name="Sneakers", original_stock=40)
    sale.end_time = sale.start_time + timedelta(minutes=45)
    sale.save()
    PurchaseFactory(sale=sale, quantity=3)
    FlashSale.objects.filter(pk=sale.pk).update(current_stock=37)

    asked = browser.get(clone_url(sale))
    assert asked.status_code == 200
    assert "Yes, clone “Sneakers”" in asked.content.decode()
    assert "the same duration (45 minutes)" in asked.content.decode()
    assert FlashSale.objects.count() == 1

    response = browser.post(clone_url(sale), follow=True)

    copy = FlashSale.objects.exclude(pk=sale.pk).get()
    assert response.redirect_chain == [(change_url(copy), 302)]
    assert any("Cloned “Sneakers” as “Sneakers (copy)”" in message for message in messages_of(response))
    assert (copy.name, copy.original_stock, copy.current_stock) == ("Sneakers (copy)", 40, 40)
    assert copy.end_time - copy.start_time == timedelta(minutes=45)
    assert copy.status == "pending" and copy.start_time > timezone.now() + timedelta(minutes=59)
    assert not Purchase.objects.filter(sale=copy).exists()
    assert stored(sale)[4] == 37  # the original is left alone
    entry = LogEntry.objects.get(object_id=str(copy.pk))
    assert (entry.action_flag, entry.user_id) == (ADDITION, staff.pk)
    assert f"Cloned from “Sneakers” (#{sale.pk})" in entry.get_change_message()


def test_a_clone_of_a_long_name_fits_the_column(browser):
    sale = SaleFactory(name="x" * 200)

    copy = services.clone_sale(sale_id=sale.pk)

    assert len(copy.name) == 200 and copy.name.endswith(" (copy)")


def test_the_clone_action_clones_every_selected_sale(browser):
    first, second = SaleFactory(name="One"), pending_sale(name="Two")

    response = browser.post(
        CHANGELIST, {"action": "clone_selected", "_selected_action": [first.pk, second.pk]}, follow=True
    )

    assert response.status_code == 200
    names = sorted(FlashSale.objects.exclude(pk__in=[first.pk, second.pk]).values_list("name", flat=True))
    assert names == ["One (copy)", "Two (copy)"]
    assert all(sale.status == "pending" for sale in FlashSale.objects.filter(name__endswith="(copy)"))


def test_a_non_staff_user_cannot_clone(client):
    sale = SaleFactory()
    client.force_login(UserFactory())

    response = client.post(clone_url(sale))

    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert FlashSale.objects.count() == 1


# --- the buyer page: links and preview ---------------------------------------------------------------


def test_the_sale_list_and_change_page_link_to_the_buyer_page(browser):
    sale = SaleFactory(name="Linked")
    buyer_page = reverse("live-sale-detail", args=[sale.pk])

    listed = browser.get(CHANGELIST).content.decode()
    change = browser.get(change_url(sale)).content.decode()

    assert f'href="{buyer_page}"' in listed
    assert f'href="{buyer_page}"' in change and "viewsitelink" in change
    assert browser.get(buyer_page).status_code == 200


def test_staff_preview_a_pending_sale_as_buyers_will_see_it_live(browser):
    sale = pending_sale(name="Secret drop", original_stock=25)

    change = browser.get(change_url(sale)).content.decode()
    response = browser.get(preview_url(sale))

    assert preview_url(sale) in change
    assert response.status_code == 200
    html = response.content.decode()
    assert "Secret drop" in html and 'id="preview-note"' in html
    assert 'data-status="active"' in html and ">Live<" in html
    assert "25 of 25" in " ".join(html.split()) or ('data-testid="stock">25<' in html)
    # Still: no live feed and no buying from a preview.
    assert "live.js" not in html and "socket.js" not in html
    assert "no-cache" in response["Cache-Control"]
    assert FlashSale.objects.get(pk=sale.pk).status == "pending"


def test_the_preview_is_staff_only(client, buyer):
    sale = pending_sale()

    anonymous = client.get(preview_url(sale))
    client.force_login(buyer)
    signed_in_buyer = client.get(preview_url(sale))

    for response in (anonymous, signed_in_buyer):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_the_preview_of_a_started_sale_is_its_real_page(browser):
    sale = SaleFactory()

    response = browser.get(preview_url(sale))

    assert response.status_code == 302
    assert response["Location"] == reverse("live-sale-detail", args=[sale.pk])


def test_a_started_sale_has_no_preview_button(browser):
    sale = SaleFactory()

    assert preview_url(sale) not in browser.get(change_url(sale)).content.decode()


# --- history: old → new, from the admin and the API -------------------------------------------------


def test_admin_edits_are_recorded_with_old_and_new_values_on_the_history_page(browser, staff):
    sale = pending_sale(name="Before", original_stock=10)
    new_end = (sale.end_time + timedelta(hours=1)).replace(microsecond=0)
    data = open_change_form(browser, sale)
    data["name"] = "After"
    data["original_stock"] = "12"
    with_datetime(data, "end_time", new_end)

    assert browser.post(change_url(sale), data).status_code == 302
    page = browser.get(history_url(sale))

    entry = LogEntry.objects.get()
    assert (entry.action_flag, entry.user_id) == (CHANGE, staff.pk)
    message = entry.get_change_message()
    assert message == (
        "Changed name: “Before” → “After”; "
        f"end: {sale.end_time:%Y-%m-%d %H:%M:%S} UTC → {new_end:%Y-%m-%d %H:%M:%S} UTC; "
        "original stock: 10 → 12."
    )
    assert page.status_code == 200
    assert "“Before” → “After”" in page.content.decode()


def test_api_edits_show_on_the_admin_history_page_with_who_made_them(browser):
    sale = pending_sale(name="Via API")
    editor = UserFactory(is_staff=True, name="Editor")

    response = client_for(editor).patch(
        f"/api/v1/flashsales/{sale.pk}/", {"name": "Renamed via API", "version": 1}, format="json"
    )
    page = browser.get(history_url(sale))

    assert response.status_code == 200
    html = page.content.decode()
    assert "Through the API: Changed name: “Via API” → “Renamed via API”." in html
    assert editor.email in html or editor.get_username() in html


def test_an_untouched_admin_form_records_no_field_changes(browser):
    sale = pending_sale()
    data = open_change_form(browser, sale)

    assert browser.post(change_url(sale), data).status_code == 302

    assert LogEntry.objects.get().get_change_message() == "No fields changed."
    assert stored(sale)[-1] == sale.version
