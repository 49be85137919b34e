from datetime import timedelta

import pytest
from django.utils import timezone

from sales import purchase
from sales.models import FlashSale
from tests.factories import SaleFactory

pytestmark = pytest.mark.django_db

SALES = "/api/v1/flashsales/"
ACTIVE = "/api/v1/flashsales/active"


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def test_active_sale_is_returned_with_derived_status(buyer_api):
    sale = SaleFactory(original_stock=100, current_stock=40)

    response = buyer_api.get(ACTIVE)

    assert response.status_code == 200
    data = response.json()["data"]
    assert data == {
        "saleId": sale.pk,
        "name": sale.name,
        "startTime": iso(sale.start_time),
        "endTime": iso(sale.end_time),
        "originalStock": 100,
        "currentStock": 40,
        "status": "active",
        "version": 1,
        "stockVersion": 1,
        "paused": False,
        "maxPerBuyer": 5,  # MAX_UNITS_PER_USER: the sale has no limit of its own
        "maxPerPurchase": 5,  # MAX_PURCHASE_QUANTITY
        "holdSeconds": 0,  # purchases are final at once
        "waitingRoom": False,  # no waiting room: bought directly, as before
        "admitPerSecond": 20,
        "admissionSeconds": 120,
        "queueOpensAt": iso(sale.start_time - timedelta(minutes=15)),
        "admissionPaused": False,
        "admittedThrough": 0,
        "joinDifficulty": 0,
    }


def test_no_active_sale_is_404_when_sales_are_pending_ended_or_sold_out(buyer_api):
    now = timezone.now()
    SaleFactory(start_time=now + timedelta(minutes=1), end_time=now + timedelta(hours=1))
    SaleFactory(start_time=now - timedelta(hours=2), end_time=now - timedelta(hours=1))
    SaleFactory(current_stock=0)

    response = buyer_api.get(ACTIVE)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_active_sale"


def test_when_several_sales_are_live_the_one_ending_first_is_active(buyer_api):
    now = timezone.now()
    SaleFactory(end_time=now + timedelta(hours=3))
    soonest = SaleFactory(end_time=now + timedelta(minutes=10))
    SaleFactory(end_time=now + timedelta(hours=2))

    assert buyer_api.get(ACTIVE).json()["data"]["saleId"] == soonest.pk


@pytest.mark.parametrize(
    "offsets, stock, expected",
    [
        ((60, 120), 10, "pending"),
        ((-60, 60), 10, "active"),
        ((-60, 60), 0, "completed"),
        ((-120, -60), 10, "completed"),
    ],
)
def test_status_is_derived_from_the_clock_and_the_stock(buyer_api, offsets, stock, expected):
    now = timezone.now()
    sale = SaleFactory(
        start_time=now + timedelta(seconds=offsets[0]),
        end_time=now + timedelta(seconds=offsets[1]),
        original_stock=10,
        current_stock=stock,
    )

    assert buyer_api.get(f"{SALES}{sale.pk}").json()["data"]["status"] == expected


def test_list_and_retrieve_for_signed_in_users(buyer_api):
    first, second = SaleFactory(), SaleFactory()

    listing = buyer_api.get(SALES)
    one = buyer_api.get(f"{SALES}{second.pk}/")

    assert listing.status_code == 200
    assert listing.json()["count"] == 2
    assert [s["saleId"] for s in listing.json()["data"]["sales"]] == [first.pk, second.pk]
    assert one.json()["data"]["saleId"] == second.pk
    assert buyer_api.get(f"{SALES}999999").json()["error"]["code"] == "sale_not_found"


def test_staff_create_a_sale_with_full_stock(staff_api):
    start = timezone.now() + timedelta(hours=1)
    payload = {
        "name": "Shoes",
        "startTime": iso(start),
        "endTime": iso(start + timedelta(hours=1)),
        "originalStock": 50,
    }

    response = staff_api.post(SALES, payload, format="json")

    assert response.status_code == 201
    sale = FlashSale.objects.get()
    assert (sale.name, sale.original_stock, sale.current_stock, sale.version) == ("Shoes", 50, 50, 1)
    assert response.json()["data"]["status"] == "pending"


def test_original_stock_defaults_to_200(staff_api):
    start = timezone.now()
    response = staff_api.post(
        SALES, {"name": "Hats", "startTime": iso(start), "endTime": iso(start + timedelta(hours=1))}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["data"]["currentStock"] == 200


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"endTime": "START"}, "endTime"),
        ({"endTime": "BEFORE"}, "endTime"),
        ({"originalStock": 0}, "originalStock"),
        ({"originalStock": "10"}, "originalStock"),
        ({"startTime": "yesterday-ish"}, "startTime"),
        ({"name": ""}, "name"),
    ],
)
def test_create_rejects_invalid_sales(staff_api, changes, field):
    start = timezone.now() + timedelta(hours=1)
    payload = {"name": "Shoes", "startTime": iso(start), "endTime": iso(start + timedelta(hours=1)), "originalStock": 5}
    replacements = {"START": iso(start), "BEFORE": iso(start - timedelta(seconds=1))}
    payload.update({k: replacements.get(v, v) for k, v in changes.items()})

    response = staff_api.post(SALES, payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["details"]
    assert FlashSale.objects.count() == 0


def test_non_staff_cannot_create_or_edit_sales(buyer_api):
    sale = SaleFactory()
    start = timezone.now()
    payload = {"name": "X", "startTime": iso(start), "endTime": iso(start + timedelta(hours=1))}

    assert buyer_api.post(SALES, payload, format="json").status_code == 403
    assert buyer_api.patch(f"{SALES}{sale.pk}/", {"name": "Y", "version": 1}, format="json").status_code == 403
    assert buyer_api.post(f"{SALES}{sale.pk}/add-units", {"units": 5}, format="json").status_code == 403
    assert FlashSale.objects.count() == 1
    assert FlashSale.objects.get().name == sale.name


def test_staff_edit_with_the_current_version_is_saved(staff_api):
    sale = SaleFactory(name="Old")

    response = staff_api.patch(f"{SALES}{sale.pk}/", {"name": "New", "version": 1}, format="json")

    assert response.status_code == 200
    sale.refresh_from_db()
    assert (sale.name, sale.version) == ("New", 2)


def test_an_edit_from_a_copy_read_before_a_purchase_is_saved_and_keeps_the_purchase(staff_api, buyer):
    sale = SaleFactory(name="Old", original_stock=10)
    read_version = sale.version
    purchase.purchase(user=buyer, sale_id=sale.pk, quantity=2)

    response = staff_api.patch(
        f"{SALES}{sale.pk}/", {"name": "New", "originalStock": 20, "version": read_version}, format="json"
    )

    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["name"], data["currentStock"], data["version"]) == ("New", 18, read_version + 1)
    sale.refresh_from_db()
    # The stock edit applies as a delta over the purchase, never over the copy the edit was made from.
    assert (sale.name, sale.original_stock, sale.current_stock) == ("New", 20, 18)
    assert sale.original_stock - sale.current_stock == 2


def test_a_second_staff_edit_from_the_same_version_is_a_version_conflict(staff_api):
    sale = SaleFactory(name="Old", original_stock=10)
    read_version = sale.version

    first = staff_api.patch(f"{SALES}{sale.pk}/", {"name": "First", "version": read_version}, format="json")
    second = staff_api.patch(
        f"{SALES}{sale.pk}/", {"name": "Second", "originalStock": 20, "version": read_version}, format="json"
    )

    assert first.status_code == 200
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "version_conflict"
    assert second.json()["error"]["details"]["currentVersion"] == read_version + 1
    sale.refresh_from_db()
    assert (sale.name, sale.original_stock, sale.version) == ("First", 10, read_version + 1)


def test_an_edit_without_a_version_is_rejected(staff_api):
    sale = SaleFactory(name="Old")

    response = staff_api.patch(f"{SALES}{sale.pk}/", {"name": "New"}, format="json")

    assert response.status_code == 400
    assert "version" in response.json()["error"]["details"]
    assert FlashSale.objects.get().name == "Old"


def test_changing_original_stock_moves_current_stock_by_the_same_delta(staff_api, buyer):
    sale = SaleFactory(original_stock=10)
    purchase.purchase(user=buyer, sale_id=sale.pk, quantity=3)
    sale.refresh_from_db()

    response = staff_api.patch(f"{SALES}{sale.pk}/", {"originalStock": 15, "version": sale.version}, format="json")

    assert response.status_code == 200
    sale.refresh_from_db()
    assert (sale.original_stock, sale.current_stock) == (15, 12)


def test_stock_cannot_be_reduced_below_units_sold(staff_api, buyer):
    sale = SaleFactory(original_stock=10)
    purchase.purchase(user=buyer, sale_id=sale.pk, quantity=4)
    sale.refresh_from_db()

    response = staff_api.patch(f"{SALES}{sale.pk}/", {"originalStock": 3, "version": sale.version}, format="json")

    assert response.status_code == 400
    assert "originalStock" in response.json()["error"]["details"]
    sale.refresh_from_db()
    assert (sale.original_stock, sale.current_stock) == (10, 6)


def test_a_live_sale_cannot_be_shortened_or_have_its_start_moved(staff_api, buyer):
    sale = SaleFactory()
    # With no purchase yet a live sale's start may move back to the future (tests/test_sales_edits.py).
    purchase.purchase(user=buyer, sale_id=sale.pk, quantity=1)
    version = FlashSale.objects.get().version

    shorter = staff_api.patch(
        f"{SALES}{sale.pk}/", {"endTime": iso(sale.end_time - timedelta(minutes=5)), "version": version}, format="json"
    )
    moved = staff_api.patch(
        f"{SALES}{sale.pk}/",
        {"startTime": iso(sale.start_time + timedelta(minutes=5)), "version": version},
        format="json",
    )

    assert shorter.status_code == moved.status_code == 400
    assert FlashSale.objects.get().version == version


def test_add_units_grows_both_stocks(staff_api, buyer):
    sale = SaleFactory(original_stock=10)
    purchase.purchase(user=buyer, sale_id=sale.pk, quantity=2)

    response = staff_api.post(f"{SALES}{sale.pk}/add-units", {"units": 5}, format="json")

    assert response.status_code == 200
    sale.refresh_from_db()
    assert (sale.original_stock, sale.current_stock) == (15, 13)


def test_ending_a_live_sale_now_closes_it(staff_api, buyer_api):
    sale = SaleFactory()

    response = staff_api.post(f"{SALES}{sale.pk}/end", format="json")

    assert response.status_code == 200
    assert response.json()["data"]["status"] == "completed"
    purchase = buyer_api.post("/api/v1/flashsales/purchase", {"saleId": sale.pk, "quantity": 1}, format="json")
    assert purchase.json()["error"]["code"] == "sale_not_active"


def test_database_refuses_stock_outside_its_bounds():
    from django.db import IntegrityError, transaction

    sale = SaleFactory(original_stock=5)
    with pytest.raises(IntegrityError), transaction.atomic():
        FlashSale.objects.filter(pk=sale.pk).update(current_stock=6)
    with pytest.raises(IntegrityError), transaction.atomic():
        FlashSale.objects.filter(pk=sale.pk).update(end_time=sale.start_time)
