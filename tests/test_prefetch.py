"""One cache round trip per API request (core/prefetch.py): the token, the sale gate and every
rate-limit counter a purchase is subject to go to Redis in one call, counted as django-ratelimit
counts them, and nothing is read again later in the request."""

import threading
from unittest import mock

import pytest
from django.core.cache import cache
from django.test import RequestFactory, override_settings
from django_ratelimit.core import get_usage

from core.cache import BreakerRedis
from sales.models import Purchase
from tests.conftest import client_for
from tests.factories import SaleFactory, UserFactory

pytestmark = [pytest.mark.django_db]

PURCHASE = "/api/v1/flashsales/purchase"
LIMITS = dict(RATELIMIT_ENABLE=True, RATELIMIT_GLOBAL="1000/m", RATELIMIT_PURCHASE="4/m")


@pytest.fixture(autouse=True)
def _redis_only():
    if not hasattr(cache, "read_and_count"):
        pytest.skip("the one round trip is Redis's (REDIS_URL); the local-memory cache reads as before")


def buy(client, sale):
    return client.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")


def redis_commands(request):
    """Every command the cache's Redis connections send for `request()` while it runs (on its own
    thread: what a process's background senders send after answering is not the request's)."""
    sent = []
    original = BreakerRedis.execute_command
    requesting = threading.current_thread()

    def recording(self, *args, **options):
        if threading.current_thread() is requesting:
            sent.append(args[0])
        return original(self, *args, **options)

    with mock.patch.object(BreakerRedis, "execute_command", recording):
        response = request()
    return response, sent


@override_settings(**LIMITS)
def test_a_bought_purchase_and_a_gated_refusal_each_make_one_cache_round_trip():
    buyer = UserFactory()
    client = client_for(buyer)
    live, sold_out = SaleFactory(original_stock=100), SaleFactory(original_stock=1, current_stock=0)
    assert buy(client, live).status_code == 201  # the token's first request reads the database
    assert buy(client, sold_out).status_code == 409  # the gate records the refusal

    bought, bought_commands = redis_commands(lambda: buy(client, live))
    refused, refused_commands = redis_commands(lambda: buy(client, sold_out))

    assert bought.status_code == 201 and refused.status_code == 409
    assert refused.json()["error"]["code"] == "sold_out"
    # Token, gate and both limits (global and purchase) in one script call each.
    assert bought_commands == ["EVALSHA"]
    assert refused_commands == ["EVALSHA"]
    assert Purchase.objects.filter(user=buyer).count() == 2


@override_settings(**LIMITS)
def test_counts_made_in_the_round_trip_are_django_ratelimits_own_counters():
    buyer = UserFactory()
    client = client_for(buyer)
    sale = SaleFactory(original_stock=100)
    answers = [buy(client, sale).status_code for _ in range(3)]  # the first reads the token from the database

    # django-ratelimit counting the same limit for the same user finds the three requests.
    request = RequestFactory().post(PURCHASE)
    request.user = buyer
    usage = get_usage(request, group="purchase", key="user", rate="4/m", increment=True)

    assert answers == [201, 201, 201]
    assert usage["count"] == 4
    fifth = buy(client, sale)
    assert fifth.status_code == 429 and fifth.json()["error"]["code"] == "rate_limited"
    assert Purchase.objects.filter(user=buyer).count() == 3


@override_settings(**LIMITS)
def test_a_deleted_token_counts_nothing_against_its_users_purchase_limit():
    buyer = UserFactory()
    client = client_for(buyer)
    sale = SaleFactory(original_stock=100)
    assert buy(client, sale).status_code == 201  # this process now knows the token's user
    buyer.auth_token.delete()

    refused = [buy(client, sale).status_code for _ in range(5)]

    request = RequestFactory().post(PURCHASE)
    request.user = buyer
    assert refused == [401] * 5
    assert get_usage(request, group="purchase", key="user", rate="4/m", increment=False)["count"] == 1
