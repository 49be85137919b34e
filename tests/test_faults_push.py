"""A real-time push that fails after a purchase committed never turns the purchase into an error."""

import pytest
from django.db import transaction

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

    monkeypatch.setattr(events, "push_purchase_made", broken_push)
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}

    response = client.post(PURCHASE, {"saleId": sale.pk, "quantity": 2}, format="json", **headers)

    assert response.status_code == 201
    assert len(pushes) == 1  # the push was attempted, after the commit
    order = Purchase.objects.get()
    assert response.json()["data"]["purchaseId"] == order.pk
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 8
    assert "channel layer unreachable" in caplog.text  # logged, not swallowed silently


def test_an_event_with_a_mistyped_field_fails_the_writer_not_the_push_after_commit(monkeypatch):
    sent = []
    monkeypatch.setattr(events, "push_sale_changed", lambda **fields: sent.append(fields))

    with transaction.atomic():
        with pytest.raises(TypeError, match="sale_idd"):
            events.sale_changed(sale_idd=1)

    assert sent == []


def test_an_event_is_sent_once_the_writers_transaction_commits_and_never_for_a_rollback(monkeypatch):
    sent = []
    monkeypatch.setattr(events, "push_sale_changed", lambda **fields: sent.append(fields))

    with transaction.atomic():
        events.sale_changed(sale_id=1)
        assert sent == []  # registered, not sent, while the transaction is open
    with pytest.raises(RuntimeError), transaction.atomic():
        events.sale_changed(sale_id=2)
        raise RuntimeError("the write fails")

    assert sent == [{"sale_id": 1}]
