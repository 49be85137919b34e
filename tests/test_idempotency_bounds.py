"""Idempotency keys do not pile up: the sale clock purges expired ones, and a user holds a bounded number."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from idempotency.models import IdempotencyKey
from sales.models import FlashSale, Purchase
from tests.conftest import client_for
from tests.factories import SaleFactory, UserFactory

pytestmark = pytest.mark.django_db

PURCHASE = "/api/v1/flashsales/purchase"


def buy(client, sale, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json", **headers)


def age(key: str, hours: int) -> None:
    IdempotencyKey.objects.filter(key=key).update(created_at=timezone.now() - timedelta(hours=hours))


def test_the_sale_clock_deletes_expired_keys_when_it_starts(buyer_api, settings):
    settings.IDEMPOTENCY_KEY_TTL_HOURS = 24
    sale = SaleFactory(original_stock=10)
    buy(buyer_api, sale, key="old")
    buy(buyer_api, sale, key="fresh")
    age("old", 25)
    out = StringIO()

    call_command("runsaleclock", "--ticks", "1", "--interval", "0", stdout=out)

    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]
    assert "deleted 1 expired idempotency keys" in out.getvalue()
    assert Purchase.objects.count() == 2


@pytest.mark.parametrize(("purge_seconds", "purges"), [(3600, 1), (0, 3)])
def test_the_sale_clock_purges_once_per_purge_interval(settings, monkeypatch, purge_seconds, purges):
    settings.IDEMPOTENCY_PURGE_SECONDS = purge_seconds
    calls = []
    monkeypatch.setattr("live.management.commands.runsaleclock.purge_expired", lambda: calls.append(1) or 0)

    call_command("runsaleclock", "--ticks", "3", "--interval", "0", stdout=StringIO())

    assert len(calls) == purges


def test_a_new_key_past_the_per_user_bound_is_429_and_buys_nothing(buyer_api, buyer, settings):
    settings.IDEMPOTENCY_MAX_KEYS_PER_USER = 3
    sale = SaleFactory(original_stock=10)
    assert [buy(buyer_api, sale, key=f"k{n}").status_code for n in range(3)] == [201, 201, 201]

    refused = buy(buyer_api, sale, key="k3")

    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "idempotency_key_limit_reached"
    assert error["details"]["limit"] == 3
    assert 23 * 3600 < error["details"]["retryAfter"] == int(refused["Retry-After"]) <= 24 * 3600 + 1
    assert IdempotencyKey.objects.filter(user=buyer).count() == 3
    assert Purchase.objects.count() == 3
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 7


def test_at_the_bound_a_held_key_still_replays_and_unkeyed_purchases_still_work(buyer_api, settings):
    settings.IDEMPOTENCY_MAX_KEYS_PER_USER = 2
    sale = SaleFactory(original_stock=10)
    first = buy(buyer_api, sale, key="k0")
    buy(buyer_api, sale, key="k1")

    replay = buy(buyer_api, sale, key="k0")
    unkeyed = buy(buyer_api, sale)
    other_user = buy(client_for(UserFactory()), sale, key="k9")

    assert (replay.status_code, replay["Idempotent-Replayed"], replay.content) == (201, "true", first.content)
    assert unkeyed.status_code == 201
    assert other_user.status_code == 201
    assert Purchase.objects.count() == 4


def test_expired_keys_do_not_count_towards_the_bound_and_are_evicted_at_it(buyer_api, buyer, settings):
    settings.IDEMPOTENCY_MAX_KEYS_PER_USER = 2
    settings.IDEMPOTENCY_KEY_TTL_HOURS = 24
    sale = SaleFactory(original_stock=10)
    buy(buyer_api, sale, key="expired")
    age("expired", 25)
    buy(buyer_api, sale, key="k1")

    within = buy(buyer_api, sale, key="k2")
    refused = buy(buyer_api, sale, key="k3")

    assert within.status_code == 201
    assert refused.status_code == 429
    assert sorted(IdempotencyKey.objects.filter(user=buyer).values_list("key", flat=True)) == ["k1", "k2"]
    assert Purchase.objects.count() == 3
