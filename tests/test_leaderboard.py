from datetime import timedelta

import pytest
from django.utils import timezone

from sales.models import FlashSale
from tests.factories import PurchaseFactory, SaleFactory, UserFactory

pytestmark = pytest.mark.django_db

LEADERBOARD = "/api/v1/leaderboard"


def test_purchases_with_known_timestamps_come_back_in_chronological_order(api):
    sale = SaleFactory()
    base = timezone.now() - timedelta(minutes=10)
    # Inserted out of order on purpose, down to microsecond differences.
    third = PurchaseFactory(sale=sale, created_at=base + timedelta(seconds=2))
    first = PurchaseFactory(sale=sale, created_at=base)
    second = PurchaseFactory(sale=sale, created_at=base + timedelta(microseconds=1))

    response = api.get(LEADERBOARD)

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["count"] == 3
    assert [p["purchaseId"] for p in body["data"]["purchases"]] == [first.pk, second.pk, third.pk]
    assert body["data"]["purchases"][0] == {
        "purchaseId": first.pk,
        "userName": first.user.name,
        "saleId": sale.pk,
        "quantity": 1,
        "timestamp": first.created_at.isoformat().replace("+00:00", "Z"),
    }


def test_equal_timestamps_are_ordered_by_purchase_id(api):
    moment = timezone.now()
    ids = [PurchaseFactory(created_at=moment).pk for _ in range(3)]

    purchases = api.get(LEADERBOARD).json()["data"]["purchases"]

    assert [p["purchaseId"] for p in purchases] == sorted(ids)


def test_leaderboard_never_shows_emails(api):
    PurchaseFactory(user=UserFactory(email="secret@example.com"))

    assert "secret@example.com" not in api.get(LEADERBOARD).content.decode()


def test_an_unknown_sale_id_is_404_sale_not_found(api):
    PurchaseFactory()

    response = api.get(LEADERBOARD, {"saleId": 987654})

    assert response.status_code == 404
    body = response.json()
    assert body["success"] is False
    assert body["error"] == {"code": "sale_not_found", "message": body["error"]["message"], "details": {"saleId": 987654}}
    assert not FlashSale.objects.filter(pk=987654).exists()


def test_a_known_sale_without_purchases_is_an_empty_page(api):
    sale = SaleFactory()
    PurchaseFactory()

    body = api.get(LEADERBOARD, {"saleId": sale.pk}).json()

    assert (body["success"], body["count"], body["data"]["purchases"]) == (True, 0, [])


def test_sale_filter_and_pagination(api):
    sale, other = SaleFactory(), SaleFactory()
    base = timezone.now() - timedelta(minutes=1)
    ours = [PurchaseFactory(sale=sale, created_at=base + timedelta(seconds=i)).pk for i in range(5)]
    PurchaseFactory(sale=other)

    body = api.get(LEADERBOARD, {"saleId": sale.pk, "page": 2, "limit": 2}).json()

    assert (body["count"], body["page"], body["limit"]) == (5, 2, 2)
    assert [p["purchaseId"] for p in body["data"]["purchases"]] == ours[2:4]


@pytest.mark.parametrize(
    "query", [{"page": 0}, {"page": "x"}, {"limit": 0}, {"limit": 101}, {"limit": "1.5"}, {"saleId": "abc"}, {"saleId": -1}]
)
def test_bad_pagination_or_filter_values_are_400(api, query):
    response = api.get(LEADERBOARD, query)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_leaderboard_is_public_even_with_a_bad_token(api):
    api.credentials(HTTP_AUTHORIZATION="Token nonsense")

    assert api.get(LEADERBOARD).status_code == 200
