"""Cross-process: two Daphne processes share the Redis channel layer; a socket on one sees a
purchase made through the other."""

import json
from uuid import uuid4

import httpx
import pytest
from channels_redis.core import RedisChannelLayer
from websockets.sync.client import connect

from harness.redis_namespace import scoped
from harness.servers import daphne_server
from sales.models import FlashSale
from tests.factories import SaleFactory, TokenFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

IDLE_SECONDS = RedisChannelLayer.brpop_timeout + 2


def receive_until(socket, kind: str, limit: int = 20) -> tuple[dict, list[dict]]:
    """The first message of `kind`, and everything received before it (bounded, never hangs)."""
    seen = []
    for _ in range(limit):
        message = json.loads(socket.recv(timeout=10))
        if message["type"] == kind:
            return message, seen
        seen.append(message)
    raise AssertionError(f"no {kind!r} message among {seen}")


def test_a_socket_on_one_server_sees_a_purchase_made_through_another():
    sale = SaleFactory(original_stock=20)
    token = TokenFactory(user=UserFactory(name="Grace"))
    # Its own channel namespace (inside the run's), so no other test or run can leak into the sockets.
    shared = {"CHANNEL_PREFIX": scoped(f"rt-{uuid4().hex[:8]}")}

    with daphne_server(**shared) as server_a, daphne_server(**shared) as server_b:
        with connect(
            f"{server_a.replace('http', 'ws')}/ws/sales/{sale.pk}/", origin=server_a, open_timeout=10
        ) as socket:
            snapshot = json.loads(socket.recv(timeout=10))
            # Idle for longer than channels_redis' blocking pop (5 s): the socket must survive it
            # (redis-py 8's default socket timeout used to kill every idle consumer here).
            with pytest.raises(TimeoutError):
                socket.recv(timeout=IDLE_SECONDS)
            response = httpx.post(
                f"{server_b}/api/v1/flashsales/purchase",
                json={"saleId": sale.pk, "quantity": 2},
                headers={"Authorization": f"Token {token.key}"},
                timeout=10,
            )
            stock, before = receive_until(socket, "stock")
            if not any(message["type"] == "purchase" for message in before):
                purchase, _ = receive_until(socket, "purchase")
            else:
                [purchase] = [message for message in before if message["type"] == "purchase"]

    assert response.status_code == 201, response.text
    stored = FlashSale.objects.get(pk=sale.pk)
    assert (stored.current_stock, stored.stock_version) == (18, snapshot["stockVersion"] + 1)
    assert snapshot["currentStock"] == 20
    assert stock == {"type": "stock", "saleId": sale.pk, "currentStock": 18, "stockVersion": stored.stock_version}
    assert (purchase["userName"], purchase["quantity"]) == ("Grace", 2)
