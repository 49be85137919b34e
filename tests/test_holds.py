"""Holds, then pay: a sale with holdSeconds > 0 holds a purchase's units until it is confirmed,
released or expired; holdSeconds 0 keeps a purchase final at once. On both backends."""

from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from sales.models import FlashSale, Purchase
from tests.factories import PurchaseFactory, SaleFactory
from tests.invariants import assert_invariant

pytestmark = pytest.mark.django_db

PURCHASE = "/api/v1/flashsales/purchase"
SALES = "/api/v1/flashsales/"
LEADERBOARD = "/api/v1/leaderboard"


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def buy(api, sale, quantity=1, **headers):
    return api.post(PURCHASE, {"saleId": sale.pk, "quantity": quantity}, format="json", headers=headers)


# --- step 1: holdSeconds and the held purchase ---------------------------------------------


def test_staff_create_and_edit_a_sales_hold(staff_api):
    start = timezone.now() + timedelta(hours=1)
    created = staff_api.post(
        SALES,
        {"name": "Held", "startTime": iso(start), "endTime": iso(start + timedelta(hours=1)), "holdSeconds": 900},
        format="json",
    )
    assert created.status_code == 201, created.json()
    sale_id = created.json()["data"]["saleId"]
    assert created.json()["data"]["holdSeconds"] == 900

    edited = staff_api.patch(f"{SALES}{sale_id}", {"version": 1, "holdSeconds": 0}, format="json")

    assert edited.status_code == 200, edited.json()
    assert edited.json()["data"]["holdSeconds"] == 0
    assert FlashSale.objects.values_list("hold_seconds", "version").get(pk=sale_id) == (0, 2)


def test_a_negative_hold_is_refused_and_changes_nothing(staff_api):
    sale = SaleFactory(hold_seconds=60)

    response = staff_api.patch(f"{SALES}{sale.pk}", {"version": 1, "holdSeconds": -1}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "holdSeconds" in response.json()["error"]["details"]
    assert FlashSale.objects.values_list("hold_seconds", "version").get(pk=sale.pk) == (60, 1)


def test_a_purchase_of_a_sale_without_holds_is_confirmed_at_once(buyer_api):
    sale = SaleFactory(original_stock=5)

    response = buy(buyer_api, sale, 2)

    assert response.status_code == 201
    data = response.json()["data"]
    assert (data["status"], data["expiresAt"], data["remainingStock"]) == ("confirmed", None, 3)
    order = Purchase.objects.get()
    assert (order.status, order.expires_at, order.confirmed_at) == ("confirmed", None, None)
    assert_invariant(sale.pk)


def test_a_purchase_of_a_sale_with_holds_is_held_until_the_database_clock_plus_the_hold(buyer_api):
    sale = SaleFactory(original_stock=5, hold_seconds=600)

    response = buy(buyer_api, sale, 2)

    assert response.status_code == 201
    data = response.json()["data"]
    order = Purchase.objects.get()
    assert (order.status, order.quantity) == ("held", 2)
    # The hold runs from the same clock reading that stamps the purchase.
    assert order.expires_at == order.created_at + timedelta(seconds=600)
    assert data["status"] == "held"
    assert data["expiresAt"] == iso(order.expires_at)
    assert data["timestamp"] == iso(order.created_at)
    # The units leave the stock at once.
    assert data["remainingStock"] == 3
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 3
    assert_invariant(sale.pk)


def test_held_units_count_against_the_buyers_limit_and_released_ones_do_not(buyer_api, buyer):
    sale = SaleFactory(original_stock=20, max_per_buyer=3, hold_seconds=600)
    PurchaseFactory(sale=sale, user=buyer, quantity=2, status="held", expires_at=timezone.now() + timedelta(minutes=5))
    PurchaseFactory(sale=sale, user=buyer, quantity=3, status="released", released_at=timezone.now())
    PurchaseFactory(sale=sale, user=buyer, quantity=3, status="expired", released_at=timezone.now())
    FlashSale.objects.filter(pk=sale.pk).update(current_stock=18)

    refused = buy(buyer_api, sale, 2)
    allowed = buy(buyer_api, sale, 1)

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "user_limit_reached"
    assert refused.json()["error"]["details"]["held"] == 2
    assert allowed.status_code == 201
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 17
    assert Purchase.objects.filter(sale=sale, status="held").aggregate(units=Sum("quantity"))["units"] == 3


def test_the_leaderboard_lists_confirmed_purchases_only(api):
    sale = SaleFactory(hold_seconds=600)
    confirmed = PurchaseFactory(sale=sale, quantity=1)
    PurchaseFactory(sale=sale, quantity=2, status="held", expires_at=timezone.now() + timedelta(minutes=5))
    PurchaseFactory(sale=sale, quantity=3, status="released", released_at=timezone.now())

    body = api.get(LEADERBOARD, {"saleId": sale.pk}).json()

    assert [row["purchaseId"] for row in body["data"]["purchases"]] == [confirmed.pk]
    assert body["count"] == 1
