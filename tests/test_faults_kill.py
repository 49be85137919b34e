"""A server process SIGKILLed in the middle of a purchase herd loses nothing and doubles nothing."""

import asyncio
from collections import Counter
from datetime import timedelta
from io import StringIO

import httpx
import pytest
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone

from harness.faults import ServerProcess, server_process
from idempotency.models import IdempotencyKey
from sales.models import FlashSale, Purchase
from tests.factories import SaleFactory, TokenFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PURCHASE = "/api/v1/flashsales/purchase"
LOST = "no answer"


async def send_all(base_url: str, attempts, kill_after: int | None = None, server: ServerProcess | None = None):
    """Send every attempt (40 in flight at a time); SIGKILL `server` once `kill_after` are answered."""
    answered = 0
    limits = httpx.Limits(max_connections=40)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        gate = asyncio.Semaphore(40)

        async def one(attempt):
            nonlocal answered
            token, key = attempt["token"], attempt["key"]
            headers = {"Authorization": f"Token {token}", **({"Idempotency-Key": key} if key else {})}
            async with gate:
                try:
                    response = await client.post(
                        PURCHASE, json={"saleId": attempt["sale"], "quantity": 1}, headers=headers
                    )
                except httpx.TransportError:
                    return LOST, None  # the connection died with the server: outcome unknown to the client
            answered += 1
            if kill_after is not None and answered == kill_after:
                await asyncio.to_thread(server.kill)
            return response.status_code, response.json()

        return await asyncio.gather(*(one(a) for a in attempts))


def test_a_server_killed_mid_herd_keeps_the_invariant_and_every_201_is_one_stored_purchase(settings):
    sale = SaleFactory(original_stock=200)
    users = UserFactory.create_batch(60)
    owner = {TokenFactory(user=user).key: user for user in users}
    tokens = list(owner)
    # 4 attempts per user (cap 5), every other one with an Idempotency-Key.
    attempts = [{"token": tokens[i % 60], "key": f"order-{i}" if i % 2 else None, "sale": sale.pk} for i in range(240)]

    server = ServerProcess()
    try:
        server.start()
        results = asyncio.run(send_all(server.base_url, attempts, kill_after=60, server=server))
        assert not server.alive
    finally:
        server.cleanup()

    statuses = Counter(status for status, _ in results)
    assert statuses[LOST] > 0 and statuses[201] > 0, statuses
    assert set(statuses) <= {201, 409, LOST}, statuses

    # Every 201 a client received is exactly one stored purchase: its own, once.
    received = [
        (attempt, body["data"]) for attempt, (status, body) in zip(attempts, results, strict=True) if status == 201
    ]
    ids = [data["purchaseId"] for _, data in received]
    assert len(ids) == len(set(ids))
    stored = {p.pk: p for p in Purchase.objects.filter(pk__in=ids)}
    assert set(stored) == set(ids)
    for attempt, data in received:
        purchase = stored[data["purchaseId"]]
        assert (purchase.user, purchase.sale_id, purchase.quantity) == (owner[attempt["token"]], sale.pk, 1)

    # The stock and the purchases agree, whatever the kill interrupted.
    sold = Purchase.objects.filter(sale=sale).aggregate(units=Sum("quantity"))["units"]
    fresh = FlashSale.objects.get(pk=sale.pk)
    assert fresh.original_stock - fresh.current_stock == sold
    # Purchases nobody heard about can only come from requests that lost their connection.
    unheard = Purchase.objects.filter(sale=sale).exclude(pk__in=ids).count()
    assert unheard <= statuses[LOST]

    # Keyed requests that got no answer are retried on a new server. Their locks belonged to the
    # dead process; the lock timeout has passed by the time a client retries (moved, not waited for).
    IdempotencyKey.objects.filter(status_code__isnull=True).update(locked_at=timezone.now() - timedelta(hours=1))
    lost_keyed = [a for a, (status, _) in zip(attempts, results, strict=True) if status == LOST and a["key"]]
    with server_process() as second:
        retried = asyncio.run(send_all(second.base_url, lost_keyed))

    assert all(status in {201, 409} for status, _ in retried), Counter(s for s, _ in retried)
    assert not [body for status, body in retried if status == 409 and body["error"]["code"].startswith("idempotency")]
    # Each key now stands for at most one purchase, and the one it names is the one stored for it.
    keyed_201 = {
        a["key"]: body["data"]["purchaseId"]
        for a, (status, body) in zip(attempts, results, strict=True)
        if status == 201 and a["key"]
    }
    keyed_201.update(
        {
            a["key"]: body["data"]["purchaseId"]
            for a, (status, body) in zip(lost_keyed, retried, strict=True)
            if status == 201
        }
    )
    records = dict(IdempotencyKey.objects.filter(status_code=201).values_list("key", "created_id"))
    assert records == keyed_201
    assert len(set(records.values())) == len(records)
    out = StringIO()
    call_command("auditsales", stdout=out)
    assert "OK: no violations" in out.getvalue()
