"""Staff edits through the API: no one-typo launches, no-op edits write nothing, fields an edit cannot
change are refused by name, stock stays under its cap, and every edit lands in the sale's history."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.utils import timezone

from core.errors import camel_case
from sales import purchase, services
from sales.exceptions import InvalidSaleChange
from sales.models import FlashSale
from tests.factories import SaleFactory

pytestmark = pytest.mark.django_db

SALES = "/api/v1/flashsales/"


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def stored(sale) -> tuple:
    fresh = FlashSale.objects.get(pk=sale.pk)
    return (fresh.name, fresh.start_time, fresh.end_time, fresh.original_stock, fresh.current_stock, fresh.version)


def pending_sale(**kwargs) -> FlashSale:
    start = timezone.now() + timedelta(hours=1)
    return SaleFactory(start_time=start, end_time=start + timedelta(hours=1), **kwargs)


def error_of(response) -> dict:
    body = response.json()
    assert body["success"] is False
    return body["error"]


# --- issue 24 bug 2: no one-typo launches --------------------------------------------------------


def test_moving_a_pending_sales_start_into_the_past_is_refused_and_changes_nothing(staff_api):
    sale = pending_sale()
    before = stored(sale)

    response = staff_api.patch(
        f"{SALES}{sale.pk}/", {"startTime": iso(timezone.now() - timedelta(minutes=5)), "version": 1}, format="json"
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert "startTime" in error["details"]
    assert "startNow" in error["details"]["startTime"][0]
    assert stored(sale) == before
    assert FlashSale.objects.get(pk=sale.pk).status == "pending"


def test_a_put_that_moves_the_start_into_the_past_is_refused_too(staff_api):
    sale = pending_sale()
    before = stored(sale)
    past = timezone.now() - timedelta(seconds=1)

    response = staff_api.put(
        f"{SALES}{sale.pk}/",
        {"version": 1, "name": sale.name, "startTime": iso(past), "endTime": iso(sale.end_time)},
        format="json",
    )

    assert response.status_code == 400
    assert "startTime" in error_of(response)["details"]
    assert stored(sale) == before


def test_start_now_starts_a_pending_sale_at_the_servers_clock(staff_api):
    sale = pending_sale(name="Drop")
    asked = timezone.now()

    response = staff_api.patch(f"{SALES}{sale.pk}/", {"startNow": True, "version": 1}, format="json")

    answered = timezone.now()
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    assert data["status"] == "active"
    assert data["version"] == 2
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert asked <= sale_now.start_time <= answered
    assert (sale_now.end_time, sale_now.name) == (sale.end_time, "Drop")


def test_start_now_with_a_start_time_or_on_a_started_sale_is_refused(staff_api):
    pending = pending_sale()
    live = SaleFactory()
    before = stored(pending), stored(live)

    both = staff_api.patch(
        f"{SALES}{pending.pk}/",
        {"startNow": True, "startTime": iso(timezone.now() + timedelta(hours=2)), "version": 1},
        format="json",
    )
    again = staff_api.patch(f"{SALES}{live.pk}/", {"startNow": True, "version": 1}, format="json")
    not_boolean = staff_api.patch(f"{SALES}{pending.pk}/", {"startNow": "true", "version": 1}, format="json")

    assert both.status_code == again.status_code == not_boolean.status_code == 400
    assert "startNow" in error_of(both)["details"]
    assert "startNow" in error_of(again)["details"]
    assert "startNow" in error_of(not_boolean)["details"]
    assert (stored(pending), stored(live)) == before


def test_creating_a_sale_that_starts_now_is_unchanged(staff_api):
    start = timezone.now() - timedelta(seconds=5)

    response = staff_api.post(
        SALES, {"name": "Now", "startTime": iso(start), "endTime": iso(start + timedelta(hours=1))}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["data"]["status"] == "active"
    assert FlashSale.objects.get().start_time == start


def test_a_live_sale_with_no_purchase_may_move_back_to_pending(staff_api):
    sale = SaleFactory(original_stock=10)
    later = timezone.now() + timedelta(hours=2)

    response = staff_api.patch(
        f"{SALES}{sale.pk}/",
        {"startTime": iso(later), "endTime": iso(later + timedelta(hours=1)), "version": 1},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["data"]["status"] == "pending"
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert (sale_now.start_time, sale_now.end_time, sale_now.version) == (later, later + timedelta(hours=1), 2)
    assert (sale_now.original_stock, sale_now.current_stock) == (10, 10)


def test_a_live_sale_with_purchases_keeps_its_start(staff_api, buyer):
    sale = SaleFactory(original_stock=10)
    purchase.purchase(user=buyer, sale_id=sale.pk, quantity=1)
    before = stored(sale)

    response = staff_api.patch(
        f"{SALES}{sale.pk}/",
        {"startTime": iso(sale.end_time), "endTime": iso(sale.end_time + timedelta(hours=1)), "version": before[-1]},
        format="json",
    )

    assert response.status_code == 400
    assert "startTime" in error_of(response)["details"]
    assert stored(sale) == before


def test_a_started_sale_cannot_have_its_start_moved_to_another_past_time(staff_api):
    sale = SaleFactory()
    before = stored(sale)

    response = staff_api.patch(
        f"{SALES}{sale.pk}/", {"startTime": iso(sale.start_time - timedelta(minutes=5)), "version": 1}, format="json"
    )

    assert response.status_code == 400
    assert "startTime" in error_of(response)["details"]
    assert stored(sale) == before


def test_a_purchase_that_lands_after_the_check_keeps_the_start_where_it_is(staff_api, buyer, monkeypatch):
    sale = SaleFactory(original_stock=10)
    real_check = services.check_sale_update
    bought = []

    def a_purchase_lands_after_the_check(**kwargs):
        updates = real_check(**kwargs)
        if not bought:
            # Inserted behind the check's back and without a version bump, as a purchase may be.
            FlashSale.objects.filter(pk=sale.pk).update(current_stock=9)
            bought.append(True)
        return updates

    monkeypatch.setattr(services, "check_sale_update", a_purchase_lands_after_the_check)

    response = staff_api.patch(
        f"{SALES}{sale.pk}/",
        {"startTime": iso(sale.end_time), "endTime": iso(sale.end_time + timedelta(hours=1)), "version": 1},
        format="json",
    )

    assert response.status_code == 400
    assert error_of(response)["details"] == {"startTime": ["1 units are already sold."]}
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert (sale_now.start_time, sale_now.version) == (sale.start_time, 1)


# --- issue 25 item 10: no-op edits and fields an edit cannot change ------------------------------


def test_a_patch_that_changes_nothing_writes_nothing_and_keeps_the_version(staff_api):
    sale = SaleFactory(name="Same", original_stock=30)
    before = stored(sale)

    response = staff_api.patch(
        f"{SALES}{sale.pk}/",
        {
            "name": "Same",
            "startTime": iso(sale.start_time),
            "endTime": iso(sale.end_time),
            "originalStock": 30,
            "version": 1,
        },
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["data"]["version"] == 1
    assert stored(sale) == before
    assert not LogEntry.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("currentStock", 5, "This field is read-only."),
        ("status", "active", "This field is read-only."),
        ("saleId", 99, "This field is read-only."),
        ("current_stock", 5, "Unknown field “current_stock”."),
        ("colour", "red", "Unknown field “colour”."),
    ],
)
def test_a_field_an_edit_cannot_change_is_refused_by_name(staff_api, field, value, message):
    sale = SaleFactory(name="Old", original_stock=10)
    before = stored(sale)

    response = staff_api.patch(f"{SALES}{sale.pk}/", {"version": 1, "name": "New", field: value}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert error["details"] == {camel_case(field): [message]}
    assert stored(sale) == before


def test_unknown_fields_are_named_beside_the_other_invalid_ones(staff_api):
    sale = SaleFactory()
    before = stored(sale)

    response = staff_api.patch(f"{SALES}{sale.pk}/", {"version": "1", "currentStock": 5}, format="json")

    assert response.status_code == 400
    assert set(error_of(response)["details"]) == {"version", "currentStock"}
    assert stored(sale) == before


# --- issue 25 item 6: the stock cap ---------------------------------------------------------------


def test_add_units_past_the_stock_cap_is_refused_and_changes_nothing(staff_api, buyer):
    sale = SaleFactory(original_stock=services.MAX_STOCK - 10)
    purchase.purchase(user=buyer, sale_id=sale.pk, quantity=2)
    before = stored(sale)

    over_total = staff_api.post(f"{SALES}{sale.pk}/add-units", {"units": 11}, format="json")
    huge = staff_api.post(f"{SALES}{sale.pk}/add-units", {"units": 2**31}, format="json")
    much_more = staff_api.post(f"{SALES}{sale.pk}/add-units", {"units": 2**80}, format="json")

    for response in (over_total, huge, much_more):
        assert response.status_code == 400, response.content
        assert error_of(response)["code"] == "validation_error"
        assert "units" in error_of(response)["details"]
    assert error_of(over_total)["details"]["units"] == ["Must be at most 10."]
    assert stored(sale) == before
    assert not LogEntry.objects.exists()


def test_add_units_up_to_the_stock_cap_is_accepted(staff_api):
    sale = SaleFactory(original_stock=services.MAX_STOCK - 10)

    response = staff_api.post(f"{SALES}{sale.pk}/add-units", {"units": 10}, format="json")

    assert response.status_code == 200
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert (sale_now.original_stock, sale_now.current_stock) == (services.MAX_STOCK, services.MAX_STOCK)


def test_the_stock_cap_holds_for_every_staff_write():
    sale = SaleFactory(original_stock=10)

    with pytest.raises(InvalidSaleChange):
        services.create_sale(name="Too big", start_time=sale.start_time, end_time=sale.end_time, original_stock=2**31)
    with pytest.raises(InvalidSaleChange):
        services.update_sale(sale_id=sale.pk, expected_version=1, changes={"original_stock": services.MAX_STOCK + 1})
    with pytest.raises(InvalidSaleChange):
        services.add_units(sale_id=sale.pk, units=2**31)
    assert FlashSale.objects.count() == 1
    assert FlashSale.objects.get(pk=sale.pk).original_stock == 10


# --- history: API edits are recorded with old and new values ------------------------------------


def test_api_edits_are_recorded_in_the_sales_history_with_old_and_new_values(staff_api, staff):
    sale = pending_sale(name="Old name", original_stock=10)
    new_end = sale.end_time + timedelta(minutes=30)

    response = staff_api.patch(
        f"{SALES}{sale.pk}/",
        {"name": "New name", "endTime": iso(new_end), "originalStock": 15, "version": 1},
        format="json",
    )
    staff_api.post(f"{SALES}{sale.pk}/add-units", {"units": 5}, format="json")

    assert response.status_code == 200
    entries = list(LogEntry.objects.filter(object_id=str(sale.pk)).order_by("pk"))
    assert [(entry.user_id, entry.action_flag) for entry in entries] == [(staff.pk, CHANGE), (staff.pk, CHANGE)]
    edit, restock = (entry.get_change_message() for entry in entries)
    assert "name: “Old name” → “New name”" in edit
    assert f"end: {sale.end_time:%Y-%m-%d %H:%M:%S} UTC → {new_end:%Y-%m-%d %H:%M:%S} UTC" in edit
    assert "original stock: 10 → 15" in edit
    assert "start" not in edit
    assert restock == "Through the API: Added 5 units: original stock 15 → 20."


def test_api_created_sales_are_recorded_as_additions(staff_api, staff):
    start = timezone.now() + timedelta(hours=1)

    response = staff_api.post(
        SALES, {"name": "Fresh", "startTime": iso(start), "endTime": iso(start + timedelta(hours=1))}, format="json"
    )

    entry = LogEntry.objects.get()
    assert (entry.object_id, entry.user_id, entry.action_flag) == (
        str(response.json()["data"]["saleId"]),
        staff.pk,
        ADDITION,
    )
    assert "name: “Fresh”" in entry.get_change_message()
