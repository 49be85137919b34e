"""A real-time push that fails after a purchase committed never turns the purchase into an error."""

import pytest

from live import events
from sales.models import FlashSale, Purchase
from tests.conftest import client_for
from tests.factories import SaleFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)  # real commits: on_commit hooks really run

PURCHASE = "/api/v1/flashsales/purchase"


@pytest.mark.parametrize("key", [None, "order-1"], ids=["without-key", "with-key"])
def test_a_purchase_whose_push_fails_after_commit_still_answers_201(monkeypatch, caplog, key):
    sale = SaleFactory(original_stock=10)
    client = client_for(UserFactory())
    pushes = []

    def broken_push(**kwargs):
        pushes.append(kwargs)
        raise ConnectionError("channel layer unreachable")

    monkeypatch.setattr(events, "purchase_made", broken_push)
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}

    response = client.post(PURCHASE, {"saleId": sale.pk, "quantity": 2}, format="json", **headers)

    assert response.status_code == 201
    assert len(pushes) == 1  # the push was attempted, after the commit
    order = Purchase.objects.get()
    assert response.json()["data"]["purchaseId"] == order.pk
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 8
    assert "channel layer unreachable" in caplog.text  # logged, not swallowed silently


def test_an_event_that_does_not_exist_fails_the_writer_not_the_push_after_commit():
    with pytest.raises(ValueError, match="sale_renamed"):
        events.send_after_commit("sale_renamed", sale_id=1)
