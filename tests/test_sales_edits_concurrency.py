"""Moving a started sale back to pending races its first purchase, on PostgreSQL with real threads:
either the purchase or the move wins, never both, and no purchase ends up outside its sale's window."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from sales import audit, purchase, services
from sales.exceptions import SalesError
from sales.models import FlashSale, Purchase
from tests.factories import SaleFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROUNDS = 25


def test_a_first_purchase_and_a_move_back_to_pending_never_both_succeed():
    buyer = UserFactory()
    outcomes = []
    for _ in range(ROUNDS):
        sale = SaleFactory(original_stock=5)
        later = timezone.now() + timedelta(hours=2)
        both_ready = threading.Barrier(2)

        def buy(sale_id=sale.pk, ready=both_ready):
            ready.wait(timeout=30)
            try:
                purchase.purchase(user=buyer, sale_id=sale_id, quantity=1)
                return "bought"
            except SalesError as refused:
                return refused.code
            finally:
                connection.close()

        def move(sale_id=sale.pk, ready=both_ready, start=later):
            ready.wait(timeout=30)
            try:
                services.update_sale(
                    sale_id=sale_id,
                    expected_version=1,
                    changes={"start_time": start, "end_time": start + timedelta(hours=1)},
                )
                return "moved"
            except SalesError as refused:
                return refused.code
            finally:
                connection.close()

        with ThreadPoolExecutor(max_workers=2) as pool:
            bought, moved = pool.submit(buy), pool.submit(move)
            outcome = (bought.result(timeout=60), moved.result(timeout=60))
        outcomes.append(outcome)
        stored = FlashSale.objects.get(pk=sale.pk)
        purchases = Purchase.objects.filter(sale=sale).count()
        if outcome[0] == "bought":
            assert outcome[1] != "moved", outcome
            assert (stored.start_time, purchases, stored.current_stock) == (sale.start_time, 1, 4)
        else:
            assert outcome == ("sale_not_active", "moved"), outcome
            assert (stored.start_time, purchases, stored.current_stock) == (later, 0, 5)

    assert audit.window_violations() == []
    assert audit.stock_violations() == []
    assert {outcome[0] for outcome in outcomes} <= {"bought", "sale_not_active"}
