"""A sale's end is decided by the database's clock under the row lock, not by the time a request
started: herds that run across the end (scheduled or a staff /end) buy nothing at or after it."""

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from sales.audit import run_audit
from sales.models import FlashSale, Purchase
from tests.conftest import client_for
from tests.factories import SaleFactory, TokenFactory, UserFactory
from tests.invariants import assert_invariant

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PURCHASE = "/api/v1/flashsales/purchase"
BUYERS = 30


def loop_buying(sale_id: int, tokens: list[str], until) -> list[tuple[int, dict]]:
    """Every buyer buys one unit after another while `until()` is false; all answers."""

    def buyer(token: str):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        answers = []
        try:
            while not until():
                response = client.post(PURCHASE, {"saleId": sale_id, "quantity": 1}, format="json")
                answers.append((response.status_code, response.json()))
                # Back to the pool after each request, as a served request does (the test client
                # keeps it), so staff's /end can get a connection while the herd runs.
                connection.close()
        finally:
            connection.close()
        return answers

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        return [answer for answers in pool.map(buyer, tokens) for answer in answers]


def assert_nothing_bought_at_or_after(sale_id: int, end) -> list[Purchase]:
    purchases = list(Purchase.objects.filter(sale_id=sale_id))
    late = [p for p in purchases if p.created_at >= end]
    assert not late, f"{len(late)} of {len(purchases)} purchases at or after the end {end}: {late[:3]}"
    return purchases


def test_a_herd_across_the_sale_end_buys_nothing_at_or_after_the_end(settings):
    settings.RATELIMIT_ENABLE = False
    settings.MAX_UNITS_PER_USER = settings.MAX_PURCHASE_QUANTITY = 100_000
    start = timezone.now() - timedelta(minutes=1)
    sale = SaleFactory(original_stock=100_000, start_time=start, end_time=timezone.now() + timedelta(seconds=1.5))
    tokens = [TokenFactory().key for _ in range(BUYERS)]

    stop_at = time.monotonic() + 3.0
    answers = loop_buying(sale.pk, tokens, until=lambda: time.monotonic() > stop_at)

    statuses = Counter(status for status, _ in answers)
    assert set(statuses) == {201, 409}, statuses
    assert {body["error"]["code"] for status, body in answers if status == 409} == {"sale_not_active"}
    purchases = assert_nothing_bought_at_or_after(sale.pk, sale.end_time)
    assert len(purchases) == statuses[201] > 0
    # What each buyer was told agrees with what is stored.
    told = [parse_datetime(body["data"]["timestamp"]) for status, body in answers if status == 201]
    assert max(told) < sale.end_time
    assert_invariant(sale.pk, cap=100_000)
    assert run_audit(max_units_per_user=100_000).ok


def test_a_herd_across_a_staff_end_buys_nothing_after_it_and_the_answer_counts_every_unit(settings, staff):
    settings.RATELIMIT_ENABLE = False
    settings.MAX_UNITS_PER_USER = settings.MAX_PURCHASE_QUANTITY = 100_000
    sale = SaleFactory(original_stock=100_000)
    tokens = [TokenFactory(user=UserFactory()).key for _ in range(BUYERS)]
    staff_api = client_for(staff)
    ended = {}
    answered = threading.Event()

    def end_after_a_moment():
        time.sleep(0.8)  # lets the herd queue on the sale's row before staff ends it
        try:
            ended["response"] = staff_api.post(f"/api/v1/flashsales/{sale.pk}/end")
            ended["at"] = time.monotonic()
        finally:
            answered.set()
            connection.close()

    def herd_is_done() -> bool:
        # Buyers keep coming for half a second after /end answered, however long it queued.
        return answered.is_set() and time.monotonic() > ended.get("at", 0) + 0.5

    closer = threading.Thread(target=end_after_a_moment)
    closer.start()
    answers = loop_buying(sale.pk, tokens, until=herd_is_done)
    closer.join()

    response = ended["response"]
    assert response.status_code == 200, response.json()
    data = response.json()["data"]
    end = parse_datetime(data["endTime"])
    purchases = assert_nothing_bought_at_or_after(sale.pk, end)
    stored = FlashSale.objects.get(pk=sale.pk)
    units = sum(p.quantity for p in purchases)
    # The answer to /end is final: no unit was sold after it was given.
    assert data["originalStock"] - data["currentStock"] == units == stored.original_stock - stored.current_stock
    assert stored.end_time == end
    assert Counter(status for status, _ in answers)[201] == len(purchases) > 0
    late_refusals = [body for status, body in answers if status == 409]
    assert late_refusals and {body["error"]["code"] for body in late_refusals} == {"sale_not_active"}
    assert_invariant(sale.pk, cap=100_000)
    assert run_audit(max_units_per_user=100_000).ok


def test_the_audit_reports_a_purchase_outside_its_sales_window():
    sale = SaleFactory()
    buyer = UserFactory()
    Purchase.objects.create(user=buyer, sale=sale, quantity=1, created_at=sale.end_time + timedelta(seconds=1))
    FlashSale.objects.filter(pk=sale.pk).update(current_stock=sale.current_stock - 1)

    report = run_audit()

    assert not report.ok
    assert any("outside the sale's window" in violation for violation in report.violations), report.violations
