"""Oversell proofs: real concurrent requests against real PostgreSQL, no mocking of the race."""

import asyncio
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection
from rest_framework.test import APIClient

from harness.servers import daphne_server
from sales.models import Purchase
from tests.factories import SaleFactory, TokenFactory, UserFactory
from tests.invariants import assert_invariant

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PURCHASE = "/api/v1/flashsales/purchase"


def test_a_herd_of_parallel_purchases_never_oversells(settings):
    settings.RATELIMIT_ENABLE = False
    settings.MAX_UNITS_PER_USER = 5
    sale = SaleFactory(original_stock=50)
    tokens = [TokenFactory().key for _ in range(60)]
    rng = random.Random(7)
    attempts = [(tokens[i % len(tokens)], rng.randint(1, 3)) for i in range(240)]

    def buy(attempt):
        token, quantity = attempt
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        try:
            response = client.post(PURCHASE, {"saleId": sale.pk, "quantity": quantity}, format="json")
            return response.status_code, response.json()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(buy, attempts))

    statuses = Counter(status for status, _ in results)
    assert not [s for s in statuses if s >= 500], statuses
    assert set(statuses) <= {201, 409}, statuses
    sale, sold = assert_invariant(sale.pk, cap=5)
    assert sold == 50 and sale.current_stock == 0
    created = [body["data"] for status, body in results if status == 201]
    assert sum(p["quantity"] for p in created) == 50
    assert len({p["purchaseId"] for p in created}) == len(created) == Purchase.objects.count()
    # The remaining stock each buyer was told is unique: every success saw its own decrement.
    assert len({p["remainingStock"] for p in created}) == len(created)


def test_parallel_purchases_by_one_user_cannot_pass_the_per_user_cap(settings):
    settings.RATELIMIT_ENABLE = False
    settings.MAX_UNITS_PER_USER = 5
    sale = SaleFactory(original_stock=100)
    token = TokenFactory().key

    def buy(_):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        try:
            return client.post(PURCHASE, {"saleId": sale.pk, "quantity": 2}, format="json").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = Counter(pool.map(buy, range(40)))

    assert statuses[201] == 2, statuses  # 2 + 2 = 4 units; a third purchase would make 6 > 5
    assert statuses[409] == 38
    sale, sold = assert_invariant(sale.pk, cap=5)
    assert (sold, sale.current_stock) == (4, 96)


def test_a_herd_through_the_running_daphne_server_gets_no_5xx():
    sale = SaleFactory(original_stock=120)
    users = UserFactory.create_batch(120)
    tokens = [TokenFactory(user=user).key for user in users]

    async def herd(base_url: str):
        limits = httpx.Limits(max_connections=320, max_keepalive_connections=320)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:

            async def buy(i: int):
                response = await client.post(
                    PURCHASE,
                    json={"saleId": sale.pk, "quantity": 1 + i % 2},
                    headers={"Authorization": f"Token {tokens[i % len(tokens)]}"},
                )
                return response.status_code, response.json()

            return await asyncio.gather(*(buy(i) for i in range(320)))

    with daphne_server() as base_url:
        results = asyncio.run(herd(base_url))

    statuses = Counter(status for status, _ in results)
    assert all(status < 500 for status in statuses), statuses
    assert set(statuses) <= {201, 409}, statuses
    sale, sold = assert_invariant(sale.pk, cap=5)
    assert sold == 120 and sale.current_stock == 0
    assert sum(body["data"]["quantity"] for status, body in results if status == 201) == 120
