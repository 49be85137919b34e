"""Keys stored before the idempotency app dropped its foreign key to sales.Purchase keep answering
the same and keep their link to the purchase (idempotency/migrations/0002)."""

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from core.responses import success
from idempotency import services as idempotency
from idempotency.models import IdempotencyKey
from sales import purchase as sales_purchase
from sales.audit import run_audit
from sales.models import Purchase
from sales.serializers import PurchaseResultSerializer
from tests.conftest import client_for
from tests.factories import SaleFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)  # schema changes: no test transaction around them

WITH_FOREIGN_KEY = [("idempotency", "0001_initial")]
WITH_CREATED_ID = [("idempotency", "0002_created_id_instead_of_purchase")]
PURCHASE = "/api/v1/flashsales/purchase"


def migrate(targets):
    """Migrate the idempotency app to `targets`; the models as they were there."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


@pytest.fixture
def idempotency_at_0001():
    old = migrate(WITH_FOREIGN_KEY)
    yield old.get_model("idempotency", "IdempotencyKey")
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # whatever happened, the next test gets today's schema


def stored_key(OldKey, *, user, key, payload, status_code, body, purchase=None, locked=False):
    now = timezone.now()
    return OldKey.objects.create(
        user_id=user.pk,
        key=key,
        fingerprint=idempotency.fingerprint("purchase", payload),
        created_at=now,
        lock_token=uuid.uuid4() if locked else None,
        locked_at=now if locked else None,
        status_code=status_code,
        response_body=body,
        purchase_id=purchase.pk if purchase else None,
    )


def test_keys_stored_with_the_foreign_key_replay_the_same_answer_and_keep_their_purchase(idempotency_at_0001):
    buyer = UserFactory()
    sale = SaleFactory(original_stock=10)
    bought = {"saleId": sale.pk, "quantity": 2}
    result = sales_purchase.purchase(user=buyer, sale_id=sale.pk, quantity=2)
    # What the purchase view answered and the decorator stored.
    answer = JSONRenderer().render(success(PurchaseResultSerializer(result).data, "Purchase successful").data)
    stored_key(
        idempotency_at_0001,
        user=buyer,
        key="order-1",
        payload=bought,
        status_code=201,
        body=answer.decode(),
        purchase=Purchase.objects.get(),
    )
    refusal = '{"success":false,"error":{"code":"sold_out","message":"Sold out.","details":{}}}'
    stored_key(idempotency_at_0001, user=buyer, key="order-2", payload=bought, status_code=409, body=refusal)
    stored_key(idempotency_at_0001, user=buyer, key="order-3", payload=bought, status_code=None, body="", locked=True)

    migrate(WITH_CREATED_ID)

    keys = {record.key: record for record in IdempotencyKey.objects.all()}
    assert (keys["order-1"].created_id, keys["order-1"].status_code) == (result.purchase_id, 201)
    assert (keys["order-2"].created_id, keys["order-2"].response_body) == (None, refusal)
    assert keys["order-3"].lock_token is not None and keys["order-3"].status_code is None
    replay = client_for(buyer).post(PURCHASE, bought, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    assert (replay.status_code, replay["Idempotent-Replayed"]) == (201, "true")
    assert replay.content == answer
    assert Purchase.objects.count() == 1
    assert run_audit().violations == []

    old = migrate(WITH_FOREIGN_KEY)  # and back, for a rollback of the deploy

    OldKey = old.get_model("idempotency", "IdempotencyKey")
    assert dict(OldKey.objects.values_list("key", "purchase_id")) == {
        "order-1": result.purchase_id,
        "order-2": None,
        "order-3": None,
    }
