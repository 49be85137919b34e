"""A purchase never makes a staff edit stale: `version` counts staff edits only, so an edit conflicts
with another staff edit and never with the buyers of a live sale (real threads on PostgreSQL)."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from rest_framework.test import APIClient

from sales.models import FlashSale
from tests.factories import SaleFactory, TokenFactory, UserFactory
from tests.invariants import assert_invariant

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PURCHASE = "/api/v1/flashsales/purchase"
SALES = "/api/v1/flashsales/"


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_an_edit_made_from_the_version_read_before_a_herd_of_purchases_is_saved(settings):
    settings.RATELIMIT_ENABLE = False
    sale = SaleFactory(original_stock=200)
    staff_token = TokenFactory(user=UserFactory(is_staff=True)).key
    buyer_tokens = [TokenFactory().key for _ in range(40)]
    read = client_with(staff_token).get(f"{SALES}{sale.pk}").json()["data"]
    new_end = sale.end_time + timedelta(hours=1)

    def act(task):
        kind, token = task
        try:
            if kind == "buy":
                return kind, client_with(token).post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")
            edit = {"version": read["version"], "endTime": iso(new_end), "originalStock": 210}
            return kind, client_with(token).patch(f"{SALES}{sale.pk}", edit, format="json")
        finally:
            connection.close()

    tasks = [("buy", token) for token in buyer_tokens]
    tasks.insert(20, ("edit", staff_token))  # lands while the herd buys
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(act, tasks))

    [edit] = [response for kind, response in answers if kind == "edit"]
    assert edit.status_code == 200, edit.json()
    assert Counter(response.status_code for kind, response in answers if kind == "buy") == {201: 40}
    sale_now, sold = assert_invariant(sale.pk)
    assert (sale_now.original_stock, sale_now.current_stock, sold) == (210, 170, 40)
    assert (sale_now.end_time, sale_now.version) == (new_end, read["version"] + 1)
    assert sale_now.stock_version == read["stockVersion"] + 41  # 40 purchases and the stock edit


def test_a_second_staff_edit_from_the_same_version_is_refused_while_buyers_buy(settings):
    settings.RATELIMIT_ENABLE = False
    sale = SaleFactory(name="Original", original_stock=100)
    staff = client_with(TokenFactory(user=UserFactory(is_staff=True)).key)
    read_version = sale.version

    def edit(name):
        try:
            return staff.patch(f"{SALES}{sale.pk}", {"version": read_version, "name": name}, format="json")
        finally:
            connection.close()

    def buy(token):
        try:
            return client_with(token).post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")
        finally:
            connection.close()

    tokens = [TokenFactory().key for _ in range(10)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        purchases = [pool.submit(buy, token) for token in tokens]
        edits = [pool.submit(edit, name) for name in ("First", "Second")]
        statuses = sorted(future.result().status_code for future in edits)
        bought = [future.result().status_code for future in purchases]

    assert statuses == [200, 409]
    [refused] = [future.result() for future in edits if future.result().status_code == 409]
    assert refused.json()["error"]["code"] == "version_conflict"
    assert bought == [201] * 10
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert sale_now.name in {"First", "Second"} and sale_now.version == read_version + 1
    assert sale_now.current_stock == 90
