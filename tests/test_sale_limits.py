"""Per-sale limits: maxPerBuyer and maxPerPurchase, set by staff, enforced by the purchase rule on
every backend (the PostgreSQL function reads them from the locked sale row)."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from sales.models import FlashSale, Purchase
from tests.factories import PurchaseFactory, SaleFactory, TokenFactory
from tests.invariants import assert_invariant

pytestmark = pytest.mark.django_db

PURCHASE = "/api/v1/flashsales/purchase"
SALES = "/api/v1/flashsales/"


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def stored(sale: FlashSale) -> tuple:
    fresh = FlashSale.objects.get(pk=sale.pk)
    return fresh.current_stock, fresh.stock_version, Purchase.objects.filter(sale=sale).count()


def test_a_sale_without_limits_of_its_own_follows_the_settings_in_force(buyer_api, settings):
    sale = SaleFactory()
    settings.MAX_UNITS_PER_USER, settings.MAX_PURCHASE_QUANTITY = 7, 3

    data = buyer_api.get(f"{SALES}{sale.pk}").json()["data"]

    assert (data["maxPerBuyer"], data["maxPerPurchase"]) == (7, 3)
    assert FlashSale.objects.values_list("max_per_buyer", "max_per_purchase").get(pk=sale.pk) == (None, None)


def test_staff_create_a_sale_with_its_own_limits(staff_api):
    start = timezone.now() + timedelta(hours=1)
    response = staff_api.post(
        SALES,
        {
            "name": "Limited",
            "startTime": iso(start),
            "endTime": iso(start + timedelta(hours=1)),
            "maxPerBuyer": 12,
            "maxPerPurchase": 2,
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    data = response.json()["data"]
    assert (data["maxPerBuyer"], data["maxPerPurchase"], data["paused"]) == (12, 2, False)
    assert FlashSale.objects.values_list("max_per_buyer", "max_per_purchase").get() == (12, 2)


@pytest.mark.parametrize(
    "limits, field",
    [
        ({"maxPerBuyer": 0}, "maxPerBuyer"),
        ({"maxPerPurchase": 0}, "maxPerPurchase"),
        ({"maxPerPurchase": 6}, "maxPerPurchase"),  # above MAX_PURCHASE_QUANTITY, the ceiling
        ({"maxPerBuyer": "3"}, "maxPerBuyer"),
        ({"maxPerPurchase": True}, "maxPerPurchase"),
    ],
)
def test_invalid_limits_are_400_and_create_nothing(staff_api, limits, field):
    start = timezone.now() + timedelta(hours=1)
    body = {"name": "Limited", "startTime": iso(start), "endTime": iso(start + timedelta(hours=1)), **limits}

    response = staff_api.post(SALES, body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert field in response.json()["error"]["details"]
    assert not FlashSale.objects.exists()


def test_staff_change_a_live_sales_limits_and_null_gives_it_back_to_the_setting(staff_api):
    sale = SaleFactory(max_per_buyer=9)

    changed = staff_api.patch(
        f"{SALES}{sale.pk}", {"version": sale.version, "maxPerBuyer": None, "maxPerPurchase": 2}, format="json"
    )

    assert changed.status_code == 200, changed.json()
    assert (changed.json()["data"]["maxPerBuyer"], changed.json()["data"]["maxPerPurchase"]) == (5, 2)
    fresh = FlashSale.objects.get(pk=sale.pk)
    assert (fresh.max_per_buyer, fresh.max_per_purchase, fresh.version) == (None, 2, sale.version + 1)


def test_a_purchase_over_the_sales_max_per_buyer_is_409_with_what_the_buyer_holds(buyer_api, buyer):
    sale = SaleFactory(original_stock=50, max_per_buyer=3)
    PurchaseFactory(user=buyer, sale=sale, quantity=2)
    FlashSale.objects.filter(pk=sale.pk).update(current_stock=48)
    before = stored(sale)

    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 2}, format="json")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "user_limit_reached"
    assert (error["details"]["maxPerBuyer"], error["details"]["held"], error["details"]["requested"]) == (3, 2, 2)
    assert "you have 2, so you can buy 1 more" in error["message"]
    assert stored(sale) == before


def test_a_sales_own_max_per_buyer_may_be_above_the_setting(buyer_api, buyer, settings):
    settings.MAX_UNITS_PER_USER = 5
    sale = SaleFactory(original_stock=50, max_per_buyer=8)

    answers = [buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 4}, format="json") for _ in range(3)]

    assert [answer.status_code for answer in answers] == [201, 201, 409]
    assert answers[2].json()["error"]["details"]["held"] == 8
    assert stored(sale)[0] == 42


def test_a_purchase_over_the_sales_max_per_purchase_is_400_and_changes_nothing(buyer_api):
    sale = SaleFactory(original_stock=50, max_per_purchase=2)
    before = stored(sale)

    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 3}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["quantity"] == ["At most 2 units in one purchase of this sale."]
    assert stored(sale) == before
    assert buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 2}, format="json").status_code == 201


def test_a_sold_out_sale_says_sold_out_before_checking_the_quantity(buyer_api):
    # The gate answers a sold-out sale from the cache without knowing the sale's limits: the
    # database's answer must be the same, so sold out comes first.
    sale = SaleFactory(original_stock=5, current_stock=0, max_per_purchase=1)

    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 2}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "sold_out"


def test_the_admin_add_form_saves_a_sales_limits(staff):
    from django.test import Client

    browser = Client()
    browser.force_login(staff)
    start = (timezone.now() + timedelta(hours=1)).replace(microsecond=0)
    data = {
        "name": "Limited",
        "original_stock": "50",
        "max_per_buyer": "4",
        "max_per_purchase": "",
        "start_time_0": start.strftime("%Y-%m-%d"),
        "start_time_1": start.strftime("%H:%M:%S"),
        "end_time_0": (start + timedelta(hours=1)).strftime("%Y-%m-%d"),
        "end_time_1": (start + timedelta(hours=1)).strftime("%H:%M:%S"),
        "_save": "Save",
    }

    response = browser.post(reverse("admin:sales_flashsale_add"), data)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    assert FlashSale.objects.values_list("max_per_buyer", "max_per_purchase").get() == (4, None)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_purchases_by_one_buyer_never_pass_the_sales_own_limit(settings):
    settings.RATELIMIT_ENABLE = False
    settings.MAX_UNITS_PER_USER = 100
    sale = SaleFactory(original_stock=100, max_per_buyer=3)
    token = TokenFactory().key

    def buy(_):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        try:
            return client.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = Counter(pool.map(buy, range(40)))

    assert (statuses[201], statuses[409]) == (3, 37), statuses
    sale_now, sold = assert_invariant(sale.pk, cap=3)
    assert (sold, sale_now.current_stock) == (3, 97)


def test_the_rule_itself_holds_every_purchase_to_max_purchase_quantity(buyer, settings):
    # Callers other than the API (scripts, a second way to buy) skip the body's parser.
    from sales import purchase
    from sales.exceptions import OverPurchaseLimit

    settings.MAX_PURCHASE_QUANTITY = 3
    sale = SaleFactory(original_stock=50, max_per_purchase=10)  # stored before the setting was lowered

    with pytest.raises(OverPurchaseLimit):
        purchase.purchase(user=buyer, sale_id=sale.pk, quantity=4)

    assert stored(sale) == (50, 1, 0)
    assert purchase.purchase(user=buyer, sale_id=sale.pk, quantity=3).remaining_stock == 47
