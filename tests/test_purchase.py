import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sales.models import FlashSale, Purchase
from tests.factories import PurchaseFactory, SaleFactory

pytestmark = pytest.mark.django_db

PURCHASE = "/api/v1/flashsales/purchase"
TRANSACTION_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE SAVEPOINT)\b", re.I)


def assert_unchanged(sale: FlashSale):
    """The sale row and the purchases table are exactly as they were before the request."""
    fresh = FlashSale.objects.get(pk=sale.pk)
    assert (fresh.current_stock, fresh.original_stock, fresh.version, fresh.stock_version) == (
        sale.current_stock,
        sale.original_stock,
        sale.version,
        sale.stock_version,
    )


def test_purchase_takes_stock_and_records_the_purchase(buyer_api, buyer):
    sale = SaleFactory(original_stock=10)

    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 3}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True
    order = Purchase.objects.get()
    assert body["data"] == {
        "purchaseId": order.pk,
        "saleId": sale.pk,
        "quantity": 3,
        "remainingStock": 7,
        "timestamp": order.created_at.isoformat().replace("+00:00", "Z"),
        # A sale without holds (holdSeconds 0): the purchase is final at once.
        "status": "confirmed",
        "expiresAt": None,
    }
    assert (order.user, order.sale_id, order.quantity) == (buyer, sale.pk, 3)
    sale.refresh_from_db()
    # The stock's counter moves; the staff's edit counter does not (a purchase never makes an edit stale).
    assert (sale.current_stock, sale.stock_version, sale.version) == (7, 2, 1)


def test_purchase_timestamp_is_taken_at_insert_with_microseconds(buyer_api):
    sale = SaleFactory()
    before = timezone.now()

    buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")

    order = Purchase.objects.get()
    assert before <= order.created_at <= timezone.now()


def test_purchase_before_the_sale_starts_is_rejected_and_changes_nothing(buyer_api):
    start = timezone.now() + timedelta(minutes=5)
    sale = SaleFactory(start_time=start, end_time=start + timedelta(hours=1))

    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "sale_not_active"
    assert error["details"]["startTime"] == sale.start_time.isoformat().replace("+00:00", "Z")
    assert "endTime" in error["details"]
    assert_unchanged(sale)
    assert Purchase.objects.count() == 0


def test_purchase_after_the_sale_ended_is_rejected_and_changes_nothing(buyer_api):
    end = timezone.now() - timedelta(seconds=1)
    sale = SaleFactory(start_time=end - timedelta(hours=1), end_time=end)

    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "sale_not_active"
    assert_unchanged(sale)
    assert Purchase.objects.count() == 0


def test_purchase_of_an_unknown_sale_is_404(buyer_api):
    response = buyer_api.post(PURCHASE, {"saleId": 999999, "quantity": 1}, format="json")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "sale_not_found"
    assert Purchase.objects.count() == 0


def test_purchase_of_a_sold_out_sale_is_409_sold_out(buyer_api):
    sale = SaleFactory(original_stock=5, current_stock=0)

    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "sold_out"
    assert_unchanged(sale)
    assert Purchase.objects.count() == 0


def test_purchase_of_more_than_is_left_is_409_insufficient_stock(buyer_api):
    sale = SaleFactory(original_stock=5, current_stock=2)

    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 3}, format="json")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "insufficient_stock"
    assert error["details"]["currentStock"] == 2
    assert_unchanged(sale)
    assert Purchase.objects.count() == 0


def test_purchase_beyond_the_per_user_cap_is_409_and_changes_nothing(buyer_api, buyer, settings):
    settings.MAX_UNITS_PER_USER = 5
    sale = SaleFactory(original_stock=50, current_stock=46)
    PurchaseFactory(user=buyer, sale=sale, quantity=4)

    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 2}, format="json")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "user_limit_reached"
    assert error["details"]["held"] == 4
    assert_unchanged(sale)
    assert Purchase.objects.count() == 1


def test_the_per_user_cap_counts_per_sale(buyer_api, buyer):
    other_sale = SaleFactory()
    PurchaseFactory(user=buyer, sale=other_sale, quantity=5)
    sale = SaleFactory()

    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 5}, format="json")

    assert response.status_code == 201


def test_quantity_limit_follows_max_purchase_quantity(buyer_api, settings):
    settings.MAX_PURCHASE_QUANTITY = 2
    sale = SaleFactory()

    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 3}, format="json")

    assert response.status_code == 400
    assert "quantity" in response.json()["error"]["details"]
    assert_unchanged(sale)


@pytest.mark.parametrize(
    "payload, bad_field",
    [
        ({"quantity": 1}, "saleId"),
        ({"saleId": "SALE"}, "quantity"),
        ({"saleId": "SALE", "quantity": 0}, "quantity"),
        ({"saleId": "SALE", "quantity": -1}, "quantity"),
        ({"saleId": "SALE", "quantity": 6}, "quantity"),
        ({"saleId": "SALE", "quantity": 10**30}, "quantity"),
        ({"saleId": "SALE", "quantity": 1.5}, "quantity"),
        ({"saleId": "SALE", "quantity": 1.0}, "quantity"),
        ({"saleId": "SALE", "quantity": "1"}, "quantity"),
        ({"saleId": "SALE", "quantity": True}, "quantity"),
        ({"saleId": "SALE", "quantity": None}, "quantity"),
        ({"saleId": "SALE", "quantity": [1]}, "quantity"),
        ({"saleId": 0, "quantity": 1}, "saleId"),
        ({"saleId": -3, "quantity": 1}, "saleId"),
        ({"saleId": "1", "quantity": 1}, "saleId"),
        ({"saleId": 1.0, "quantity": 1}, "saleId"),
        ({"saleId": 2**70, "quantity": 1}, "saleId"),
        ({"saleId": "abc", "quantity": 1}, "saleId"),
    ],
)
def test_invalid_purchase_input_is_400_with_field_details_and_writes_nothing(buyer_api, payload, bad_field):
    sale = SaleFactory()
    payload = {k: (sale.pk if v == "SALE" else v) for k, v in payload.items()}

    response = buyer_api.post(PURCHASE, payload, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert bad_field in error["details"]
    assert_unchanged(sale)
    assert Purchase.objects.count() == 0


@pytest.mark.parametrize("raw", ["[1, 2]", '"text"', "42", "null", "{not json", ""])
def test_a_body_that_is_not_a_json_object_is_400(buyer_api, raw):
    sale = SaleFactory()

    response = buyer_api.generic("POST", PURCHASE, raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert_unchanged(sale)


def test_purchase_requires_authentication(api):
    sale = SaleFactory()

    response = api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")

    assert response.status_code == 401
    assert_unchanged(sale)


@pytest.mark.django_db(transaction=True)  # a real transaction: no test savepoints in the count
def test_a_successful_purchase_costs_the_token_read_and_the_purchase(buyer_api):
    sale = SaleFactory()

    with CaptureQueriesContext(connection) as captured:
        response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")

    assert response.status_code == 201
    # Transaction control (SQLite logs BEGIN/COMMIT, PostgreSQL does not) is not a query.
    statements = [q["sql"] for q in captured.captured_queries if not TRANSACTION_CONTROL.match(q["sql"])]
    # The first request of a token reads it; the purchase is one statement on PostgreSQL and the
    # UPDATE, the stock-and-holding read and the INSERT on SQLite.
    assert len(statements) == (2 if connection.vendor == "postgresql" else 4), "\n".join(statements)
    assert "flashsale_purchase" in statements[-1] or connection.vendor != "postgresql"
