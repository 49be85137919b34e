"""A token served from the cache can outlive its user when the user is deleted straight in the
database (for up to AUTH_TOKEN_CACHE_SECONDS). Writes that then fail their foreign key say so with
401 authentication_failed, not a 500 or a misleading idempotency conflict."""

import pytest
from django.db import connection

from sales.models import FlashSale, Purchase
from tests.conftest import client_for
from tests.factories import SaleFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

PURCHASE = "/api/v1/flashsales/purchase"


def delete_behind_the_caches_back(user) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM authtoken_token WHERE user_id = %s", [user.pk])
        cursor.execute("DELETE FROM accounts_user WHERE id = %s", [user.pk])


@pytest.mark.parametrize("headers", [{}, {"HTTP_IDEMPOTENCY_KEY": "retry-1"}], ids=["plain", "with-key"])
def test_a_purchase_by_a_user_deleted_while_their_token_is_cached_is_401_and_changes_nothing(headers):
    user = UserFactory()
    client = client_for(user)
    sale = SaleFactory(original_stock=10)
    assert client.get("/api/v1/flashsales/active").status_code == 200  # the token is now cached
    delete_behind_the_caches_back(user)

    response = client.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json", **headers)

    assert response.status_code == 401, response.json()
    assert response.json()["error"]["code"] == "authentication_failed"
    assert Purchase.objects.count() == 0
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 10
