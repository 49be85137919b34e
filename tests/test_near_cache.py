"""A process's own copies of the token's user and the sale gate's refusal (core.near_cache): the
herd's refusals ask Redis nothing while rate limits are off and only count the limits while they
are on; a restock or a deleted token is seen at once in the process that made it, and by the
others as soon as its pub/sub message arrives; a copy never outlives LOCAL_CACHE_MS (a token's,
LOCAL_TOKEN_CACHE_MS)."""

import subprocess
import sys
import textwrap
from unittest import mock

import pytest
from django.core.cache import cache
from django.test import RequestFactory, override_settings
from django_ratelimit.core import get_usage
from rest_framework.authtoken.models import Token

from accounts.authentication import near_user
from core import near_cache
from harness.faults import wait_for
from harness.servers import PROJECT_DIR, server_env
from sales import gate
from sales.models import FlashSale, Purchase
from tests.conftest import client_for
from tests.factories import SaleFactory, UserFactory
from tests.test_prefetch import PURCHASE, buy, redis_commands

LIMITS = dict(RATELIMIT_ENABLE=True, RATELIMIT_GLOBAL="1000/h", RATELIMIT_PURCHASE="6/h")
# Long enough that only a message can take a copy away while a test runs.
NO_EXPIRY = dict(LOCAL_CACHE_MS=600_000, LOCAL_TOKEN_CACHE_MS=600_000)


@pytest.fixture(autouse=True)
def _listening():
    if not hasattr(cache, "read_and_count"):
        pytest.skip("copies are kept with the Redis cache only (REDIS_URL)")
    near_cache.start_listener()
    assert near_cache.listening().wait(10), "the near cache's listener did not subscribe"


def refused_from_copies(client, sale):
    """Buy until this process answers the refusal from its own copies (the first asks the
    database, the second reads token and gate from Redis and keeps them)."""
    for _ in range(2):
        assert buy(client, sale).status_code == 409
    assert gate.known_here(sale.pk) is not None


def other_process(code: str) -> None:
    """Run `code` in a fresh Django process on this test run's database and Redis keys."""
    script = "import django; django.setup()\n" + textwrap.dedent(code)
    subprocess.run([sys.executable, "-c", script], cwd=PROJECT_DIR, env=server_env(), check=True, timeout=60)


@pytest.mark.django_db
@override_settings(RATELIMIT_ENABLE=False)
def test_a_gated_refusal_sends_no_redis_command_when_rate_limits_are_off():
    buyer = UserFactory()
    client = client_for(buyer)
    sale = SaleFactory(original_stock=1, current_stock=0)
    refused_from_copies(client, sale)

    refused, commands = redis_commands(lambda: buy(client, sale))

    assert refused.status_code == 409 and refused.json()["error"]["code"] == "sold_out"
    assert commands == []
    assert not Purchase.objects.filter(sale=sale).exists()


@pytest.mark.django_db
@override_settings(**LIMITS)
def test_with_rate_limits_on_a_gated_refusal_only_counts_them_and_still_hits_the_purchase_limit():
    buyer = UserFactory()
    client = client_for(buyer)
    sale = SaleFactory(original_stock=1, current_stock=0)
    refused_from_copies(client, sale)  # two refusals counted

    with mock.patch.object(cache, "read_and_count", wraps=cache.read_and_count) as read_and_count:
        refused, commands = redis_commands(lambda: buy(client, sale))
        answers = [buy(client, sale).status_code for _ in range(4)]

    assert refused.status_code == 409 and commands == ["EVALSHA"]
    reads, counters = read_and_count.call_args_list[0].args
    assert reads == [] and [counter.group for counter in counters] == ["global", "purchase"]
    # Refusals 3 to 6 within the limit of 6, the 7th over it: every one was counted.
    assert answers == [409, 409, 409, 429]
    request = RequestFactory().post(PURCHASE)
    request.user = buyer
    assert get_usage(request, group="purchase", key="user", rate="6/h", increment=False)["count"] == 7


@pytest.mark.django_db
@override_settings(RATELIMIT_ENABLE=False, **NO_EXPIRY)
def test_a_restock_in_this_process_is_seen_by_the_next_purchase(staff_api, django_capture_on_commit_callbacks):
    client = client_for(UserFactory())
    sale = SaleFactory(original_stock=1, current_stock=0)
    refused_from_copies(client, sale)

    with django_capture_on_commit_callbacks(execute=True):
        added = staff_api.post(f"/api/v1/flashsales/{sale.pk}/add-units", {"units": 1}, format="json")

    assert added.status_code == 200
    assert gate.known_here(sale.pk) is None
    assert buy(client, sale).status_code == 201
    assert Purchase.objects.filter(sale=sale).count() == 1


@pytest.mark.django_db
@override_settings(RATELIMIT_ENABLE=False, **NO_EXPIRY)
def test_a_deleted_token_is_refused_at_once_in_this_process():
    buyer = UserFactory()
    client = client_for(buyer)
    sale = SaleFactory(original_stock=1, current_stock=0)
    refused_from_copies(client, sale)

    buyer.auth_token.delete()  # what logout does (accounts.services.revoke_tokens)
    response = buy(client, sale)

    assert response.status_code == 401


@pytest.mark.django_db(transaction=True)
@override_settings(RATELIMIT_ENABLE=False, **NO_EXPIRY)
def test_a_restock_in_another_process_drops_this_process_copy():
    client = client_for(UserFactory())
    sale = SaleFactory(original_stock=1, current_stock=0)
    refused_from_copies(client, sale)

    other_process(
        f"""
        from sales import services
        services.add_units(sale_id={sale.pk}, units=1)
        """
    )

    wait_for(lambda: gate.known_here(sale.pk) is None, 10, "the other process's message")
    assert buy(client, sale).status_code == 201
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 0


@pytest.mark.django_db(transaction=True)
@override_settings(RATELIMIT_ENABLE=False, **NO_EXPIRY)
def test_a_logout_in_another_process_stops_the_token_here():
    buyer = UserFactory()
    client = client_for(buyer)
    sale = SaleFactory(original_stock=1, current_stock=0)
    refused_from_copies(client, sale)
    key = buyer.auth_token.key

    other_process(
        f"""
        from accounts import services
        from accounts.models import User
        services.logout(user=User.objects.get(pk={buyer.pk}))
        """
    )

    wait_for(lambda: buy(client, sale).status_code == 401, 10, "the token refused here")
    assert not Token.objects.filter(key=key).exists()


@pytest.mark.django_db
@override_settings(RATELIMIT_ENABLE=False, **NO_EXPIRY)
def test_a_message_from_another_redis_client_drops_the_named_copy_only():
    client = client_for(UserFactory())
    dropped, kept = SaleFactory(original_stock=1, current_stock=0), SaleFactory(original_stock=1, current_stock=0)
    refused_from_copies(client, dropped)
    refused_from_copies(client, kept)

    cache.publish(near_cache.CHANNEL, f"gate {dropped.pk}")

    wait_for(lambda: gate.known_here(dropped.pk) is None, 10, "the message")
    assert gate.known_here(kept.pk) is not None


@pytest.mark.django_db
@override_settings(RATELIMIT_ENABLE=False, LOCAL_CACHE_MS=500)
def test_a_copy_is_not_served_once_local_cache_ms_passed_since_its_read():
    client = client_for(UserFactory())
    sale = SaleFactory(original_stock=1, current_stock=0)
    refused_from_copies(client, sale)
    after_its_read = near_cache.time.monotonic()

    with mock.patch.object(near_cache.time, "monotonic", return_value=after_its_read + 0.5):
        expired = gate.known_here(sale.pk)
    with override_settings(LOCAL_CACHE_MS=0):
        disabled = gate.known_here(sale.pk)

    assert gate.known_here(sale.pk) is not None
    assert expired is None and disabled is None


@pytest.mark.django_db
@override_settings(RATELIMIT_ENABLE=False, LOCAL_CACHE_MS=500, LOCAL_TOKEN_CACHE_MS=60_000)
def test_a_tokens_copy_lives_for_local_token_cache_ms_and_the_gates_for_local_cache_ms():
    buyer = UserFactory()
    client = client_for(buyer)
    key = Token.objects.get(user=buyer).key
    sale = SaleFactory(original_stock=1, current_stock=0)
    refused_from_copies(client, sale)
    after_its_read = near_cache.time.monotonic()

    with mock.patch.object(near_cache.time, "monotonic", return_value=after_its_read + 30):
        token_after_30_s, gate_after_30_s = near_user(key), gate.known_here(sale.pk)
    with mock.patch.object(near_cache.time, "monotonic", return_value=after_its_read + 60):
        token_after_60_s = near_user(key)

    assert token_after_30_s is not None and token_after_30_s.pk == buyer.pk
    assert gate_after_30_s is None
    assert token_after_60_s is None


@pytest.mark.django_db
@override_settings(RATELIMIT_ENABLE=False, **NO_EXPIRY)
def test_what_a_request_read_before_a_restock_is_not_kept_after_it():
    sale = SaleFactory(original_stock=1, current_stock=0)
    refused_from_copies(client_for(UserFactory()), sale)  # the gate holds its refusal in Redis
    read_at = near_cache.time.monotonic()
    found = cache.get_many(gate.cache_keys(sale.pk))

    gate.forget(sale.pk)  # a restock commits while that request is under way
    kept = gate.known_in(found, sale_id=sale.pk, read_at=read_at)  # the request goes on with what it read

    assert kept is not None and kept.sold_out
    assert gate.known_here(sale.pk) is None


@pytest.mark.django_db
@override_settings(**LIMITS, RATELIMIT_QUEUE_JOIN_IP="1000/h")
def test_a_waiting_room_join_with_a_copied_token_counts_its_limits_in_the_one_round_trip():
    buyer = UserFactory()
    client = client_for(buyer)
    sold_out, room = SaleFactory(original_stock=1, current_stock=0), SaleFactory(waiting_room=True)
    refused_from_copies(client, sold_out)  # this process keeps the token's copy now

    with mock.patch.object(cache, "read_and_count", wraps=cache.read_and_count) as read_and_count:
        joined, commands = redis_commands(lambda: client.post(f"/api/v1/flashsales/{room.pk}/queue"))

    assert joined.status_code in (200, 201), joined.content
    assert commands == ["EVALSHA"]  # the limits counted with the global one, no read went wrong
    reads, counters = read_and_count.call_args_list[0].args
    assert "queue" in [counter.group for counter in counters]
    assert all(counter.only_if is None or counter.only_if in reads for counter in counters)
    request = RequestFactory().post("/")
    request.user = buyer
    assert get_usage(request, group="queue", key="user", rate="6/h", increment=False)["count"] == 1
