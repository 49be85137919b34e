"""Idempotency under real parallel requests on PostgreSQL: a key never buys twice."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.test import APIClient

from idempotency.models import IdempotencyKey
from sales.models import FlashSale, Purchase
from tests.factories import SaleFactory, TokenFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PURCHASE = "/api/v1/flashsales/purchase"


def send(token: str, key: str, body: dict):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    try:
        response = client.post(PURCHASE, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
        return response.status_code, response.get("Idempotent-Replayed"), response.content, response.json()
    finally:
        connection.close()


def test_parallel_twins_with_one_key_make_exactly_one_purchase(settings):
    settings.RATELIMIT_ENABLE = False
    sale = SaleFactory(original_stock=50)
    token = TokenFactory().key
    body = {"saleId": sale.pk, "quantity": 2}

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: send(token, "the-one-order", body), range(32)))

    order = Purchase.objects.get()
    assert order.quantity == 2
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 48
    statuses = Counter(status for status, *_ in results)
    assert set(statuses) <= {201, 409}, statuses
    originals = [r for r in results if r[0] == 201 and r[1] is None]
    replays = [r for r in results if r[0] == 201 and r[1] == "true"]
    in_use = [r for r in results if r[0] == 409]
    assert len(originals) == 1
    assert all(content == originals[0][2] for _, _, content, _ in replays)
    assert originals[0][3]["data"]["purchaseId"] == order.pk
    assert all(body["error"]["code"] == "idempotency_key_in_use" for *_, body in in_use)
    record = IdempotencyKey.objects.get()
    assert (record.status_code, record.created_id) == (201, order.pk)


def test_parallel_requests_reusing_a_key_with_different_bodies_buy_once(settings):
    settings.RATELIMIT_ENABLE = False
    sale = SaleFactory(original_stock=50)
    token = TokenFactory().key
    bodies = [{"saleId": sale.pk, "quantity": 1 + i % 3} for i in range(30)]

    with ThreadPoolExecutor(max_workers=15) as pool:
        results = list(pool.map(lambda body: send(token, "k", body), bodies))

    order = Purchase.objects.get()
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 50 - order.quantity
    codes = Counter(body["error"]["code"] for status, _, _, body in results if status >= 400)
    assert set(codes) <= {"idempotency_key_in_use", "idempotency_key_reused"}, codes
    assert all(status in {201, 409, 422} for status, *_ in results)
    # Every 201 is that one purchase.
    assert {body["data"]["purchaseId"] for status, _, _, body in results if status == 201} == {order.pk}


def test_a_herd_of_retried_orders_buys_each_order_once_and_replays_it_afterwards(settings):
    settings.RATELIMIT_ENABLE = False
    settings.MAX_UNITS_PER_USER = 100
    sale = SaleFactory(original_stock=200)
    tokens = [TokenFactory().key for _ in range(5)]
    # 5 users x 6 orders, each order sent 4 times at once (a client retrying over a flaky network).
    orders = [(token, f"order-{n}") for token in tokens for n in range(6)]
    attempts = [order for order in orders for _ in range(4)]

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(lambda o: send(o[0], o[1], {"saleId": sale.pk, "quantity": 1}), attempts))

    assert all(status in {201, 409} for status, *_ in results)
    assert Purchase.objects.count() == len(orders) == IdempotencyKey.objects.filter(status_code=201).count()
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 200 - len(orders)
    # After the herd every order, retried once more, answers with its own single purchase.
    replayed = [send(token, key, {"saleId": sale.pk, "quantity": 1}) for token, key in orders]
    assert all(status == 201 and flag == "true" for status, flag, *_ in replayed)
    purchase_ids = [body["data"]["purchaseId"] for *_, body in replayed]
    assert sorted(purchase_ids) == sorted(Purchase.objects.values_list("pk", flat=True))
    first_answers = {body["data"]["purchaseId"] for status, _, _, body in results if status == 201}
    assert first_answers == set(purchase_ids)
