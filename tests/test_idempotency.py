"""Idempotency-Key on POST /api/v1/flashsales/purchase: one purchase per key, replayed answers."""

import json
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from idempotency import services as idempotency
from idempotency.models import IdempotencyKey
from sales import purchase as sales_purchase
from sales import services as sales_services
from sales.models import FlashSale, Purchase
from tests.conftest import client_for
from tests.factories import SaleFactory, UserFactory

pytestmark = pytest.mark.django_db

PURCHASE = "/api/v1/flashsales/purchase"


def buy(client, sale, key=None, quantity=1, **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(PURCHASE, {"saleId": sale.pk, "quantity": quantity}, format="json", **headers, **extra)


def stock_of(sale) -> int:
    return FlashSale.objects.get(pk=sale.pk).current_stock


def test_a_keyed_purchase_is_made_once_and_stored_with_its_answer(buyer_api, buyer):
    sale = SaleFactory(original_stock=10)

    response = buy(buyer_api, sale, key="order-1", quantity=2)

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    order = Purchase.objects.get()
    record = IdempotencyKey.objects.get()
    assert (record.user, record.key, record.status_code, record.created_id) == (buyer, "order-1", 201, order.pk)
    assert record.lock_token is None and record.locked_at is None
    assert json.loads(record.response_body) == response.json()
    assert stock_of(sale) == 8


def test_a_retry_with_the_same_key_replays_the_first_answer_and_buys_nothing(buyer_api):
    sale = SaleFactory(original_stock=10)
    first = buy(buyer_api, sale, key="order-1", quantity=2)

    second = buy(buyer_api, sale, key="order-1", quantity=2)

    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert Purchase.objects.count() == 1
    assert stock_of(sale) == 8


def test_the_same_json_in_another_key_order_or_spacing_is_the_same_request(buyer_api):
    sale = SaleFactory()
    buy(buyer_api, sale, key="k")
    raw = '{ "quantity": 1,\n  "saleId": ' + str(sale.pk) + " }"

    replay = buyer_api.generic("POST", PURCHASE, raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")

    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert Purchase.objects.count() == 1


def test_the_trailing_slash_does_not_make_another_request(buyer_api):
    sale = SaleFactory()
    buy(buyer_api, sale, key="k")

    replay = buyer_api.post(PURCHASE + "/", {"saleId": sale.pk, "quantity": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert replay["Idempotent-Replayed"] == "true"
    assert Purchase.objects.count() == 1


def test_the_same_key_with_a_different_body_is_422_and_buys_nothing(buyer_api):
    sale = SaleFactory(original_stock=10)
    buy(buyer_api, sale, key="order-1", quantity=1)

    response = buy(buyer_api, sale, key="order-1", quantity=2)

    assert response.status_code == 422
    assert response.json()["success"] is False
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Purchase.objects.count() == 1
    assert stock_of(sale) == 9


def test_keys_are_per_user(buyer_api):
    sale = SaleFactory(original_stock=10)
    other = client_for(UserFactory())

    first = buy(buyer_api, sale, key="shared-key")
    second = buy(other, sale, key="shared-key")

    assert (first.status_code, second.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in second
    assert Purchase.objects.count() == 2
    assert IdempotencyKey.objects.count() == 2


def test_a_twin_arriving_while_the_first_request_runs_gets_409_in_use(buyer_api, monkeypatch):
    sale = SaleFactory(original_stock=10)
    real_purchase = sales_purchase.purchase
    twin_answers = []

    def purchase_with_a_twin_arriving(**kwargs):
        # The twin is sent while the first request holds the key, before it has bought anything.
        twin_answers.append(buy(buyer_api, sale, key="order-1"))
        return real_purchase(**kwargs)

    monkeypatch.setattr(sales_purchase, "purchase", purchase_with_a_twin_arriving)

    first = buy(buyer_api, sale, key="order-1")

    assert first.status_code == 201
    [twin] = twin_answers
    assert twin.status_code == 409
    assert twin.json()["error"]["code"] == "idempotency_key_in_use"
    assert Purchase.objects.count() == 1
    assert stock_of(sale) == 9
    assert IdempotencyKey.objects.get().status_code == 201


@pytest.mark.parametrize(
    "payload",
    [{"quantity": 1}, {"saleId": "SALE", "quantity": 0}, {"saleId": "SALE", "quantity": "1"}],
)
def test_validation_failures_are_not_stored_so_the_key_can_be_used_after_fixing_the_body(buyer_api, payload):
    sale = SaleFactory(original_stock=10)
    payload = {k: (sale.pk if v == "SALE" else v) for k, v in payload.items()}

    refused = buyer_api.post(PURCHASE, payload, format="json", HTTP_IDEMPOTENCY_KEY="order-1")

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "validation_error"
    assert not IdempotencyKey.objects.exists()
    fixed = buy(buyer_api, sale, key="order-1")
    assert fixed.status_code == 201
    assert "Idempotent-Replayed" not in fixed
    assert Purchase.objects.count() == 1


def test_malformed_json_with_a_key_is_400_and_not_stored(buyer_api):
    response = buyer_api.generic("POST", PURCHASE, "{nope", content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")

    assert response.status_code == 400
    assert not IdempotencyKey.objects.exists()


def test_an_unauthenticated_request_with_a_key_is_401_and_not_stored(api):
    sale = SaleFactory()

    response = buy(api, sale, key="order-1")

    assert response.status_code == 401
    assert not IdempotencyKey.objects.exists()
    assert Purchase.objects.count() == 0


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "tab\there", "bell\x07", "caf\u00e9", "snow\u2603"],
    ids=["empty", "256-chars", "tab", "control", "latin1", "non-latin"],
)
def test_a_key_that_is_not_1_to_255_printable_characters_is_400_and_buys_nothing(buyer_api, key):
    sale = SaleFactory(original_stock=10)

    response = buy(buyer_api, sale, key=key)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "Idempotency-Key" in error["details"]
    assert Purchase.objects.count() == 0
    assert not IdempotencyKey.objects.exists()


@pytest.mark.parametrize("key", ["a", "x" * 255, "8e03978e-40d5-43e8-bc93-6894a57f9324", 'with space "and" ~!@#'])
def test_keys_of_1_to_255_printable_characters_are_accepted(buyer_api, key):
    sale = SaleFactory()

    response = buy(buyer_api, sale, key=key)

    assert response.status_code == 201
    assert IdempotencyKey.objects.get().key == key


def test_a_business_refusal_is_stored_and_replayed_even_after_the_cause_goes_away(
    buyer_api, django_capture_on_commit_callbacks
):
    sale = SaleFactory(original_stock=5, current_stock=0)
    refused = buy(buyer_api, sale, key="order-1")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "sold_out"
    with django_capture_on_commit_callbacks(execute=True):  # the restock's after-commit effects
        sales_services.add_units(sale_id=sale.pk, units=5)

    replay = buy(buyer_api, sale, key="order-1")

    assert replay.status_code == 409
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == refused.content
    assert Purchase.objects.count() == 0
    assert IdempotencyKey.objects.get().created_id is None
    # A new key is a new attempt.
    assert buy(buyer_api, sale, key="order-2").status_code == 201


def test_an_unexpected_error_releases_the_key_so_a_retry_can_buy(buyer_api, monkeypatch):
    sale = SaleFactory(original_stock=10)

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(sales_purchase, "purchase", broken)
    failed = buy(buyer_api, sale, key="order-1")
    assert failed.status_code == 500
    assert not IdempotencyKey.objects.exists()
    monkeypatch.undo()

    retried = buy(buyer_api, sale, key="order-1")

    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried
    assert Purchase.objects.count() == 1


def test_a_request_that_lost_its_key_to_a_takeover_rolls_its_purchase_back(buyer_api, monkeypatch):
    sale = SaleFactory(original_stock=10)
    real_purchase = sales_purchase.purchase

    def purchase_then_lose_the_lock(**kwargs):
        order = real_purchase(**kwargs)
        # Another request took the key over as abandoned while this one was still running.
        IdempotencyKey.objects.update(lock_token=uuid.uuid4(), locked_at=timezone.now())
        return order

    monkeypatch.setattr(sales_purchase, "purchase", purchase_then_lose_the_lock)

    response = buy(buyer_api, sale, key="order-1")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_in_use"
    assert Purchase.objects.count() == 0
    assert stock_of(sale) == 10
    assert IdempotencyKey.objects.get().status_code is None


def test_a_key_whose_request_died_can_be_retried_after_the_lock_timeout(buyer_api, buyer, settings):
    settings.IDEMPOTENCY_LOCK_SECONDS = 30
    sale = SaleFactory(original_stock=10)
    fp = idempotency.fingerprint("purchase", {"saleId": sale.pk, "quantity": 1})
    claim = idempotency.claim(user=buyer, key="order-1", request_fingerprint=fp)
    assert isinstance(claim, idempotency.Claim)

    assert buy(buyer_api, sale, key="order-1").status_code == 409  # still within the lock timeout
    IdempotencyKey.objects.update(locked_at=timezone.now() - timedelta(seconds=31))
    taken_over = buy(buyer_api, sale, key="order-1")

    assert taken_over.status_code == 201
    assert Purchase.objects.count() == 1
    record = IdempotencyKey.objects.get()
    assert (record.status_code, record.created_id) == (201, taken_over.json()["data"]["purchaseId"])
    # The dead request's claim can no longer complete anything.
    with pytest.raises(Exception) as lost:
        idempotency.complete(claim, status_code=201, body="{}")
    assert getattr(lost.value, "code", None) == "idempotency_key_in_use"


def test_an_expired_key_is_forgotten_and_starts_a_new_purchase(buyer_api, settings):
    settings.IDEMPOTENCY_KEY_TTL_HOURS = 24
    sale = SaleFactory(original_stock=10)
    buy(buyer_api, sale, key="order-1")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))

    again = buy(buyer_api, sale, key="order-1")

    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again
    assert Purchase.objects.count() == 2
    assert IdempotencyKey.objects.get().created_id == again.json()["data"]["purchaseId"]


def test_the_purge_command_deletes_only_expired_keys(buyer_api, settings):
    settings.IDEMPOTENCY_KEY_TTL_HOURS = 24
    sale = SaleFactory(original_stock=10)
    buy(buyer_api, sale, key="old")
    buy(buyer_api, sale, key="fresh")
    IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
    out = StringIO()

    call_command("purgeidempotencykeys", stdout=out)

    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]
    assert "deleted 1" in out.getvalue()
    assert Purchase.objects.count() == 2


def test_a_rate_limited_request_is_not_stored(buyer_api, settings):
    settings.RATELIMIT_PURCHASE = "1/d"
    sale = SaleFactory(original_stock=10)
    buy(buyer_api, sale, key="order-1")

    limited = buy(buyer_api, sale, key="order-2")

    assert limited.status_code == 429
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["order-1"]
