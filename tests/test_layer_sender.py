"""Channel-layer sends leave the request at once, go out in order, and coalesce when Redis stalls."""

import asyncio
import threading
from collections import deque

from live import layer_sender


class StallingLayer:
    """A channel layer whose sends wait until the test lets them through, recording what went out."""

    def __init__(self):
        self.sent: list[tuple[str, dict]] = []
        self.open = threading.Event()

    async def group_send(self, group: str, message: dict) -> None:
        await asyncio.to_thread(self.open.wait, 10)
        self.sent.append((group, message))


def stock(version: int, current: int) -> dict:
    return {"type": "sale.event", "message": {"stock": {"saleId": 1, "currentStock": current, "version": version}}}


def test_send_soon_returns_before_the_layer_answers_and_sends_in_order():
    layer = StallingLayer()

    for version in (1, 2, 3):
        layer_sender.send_soon(layer, "sale.1", stock(version, 10 - version))
    assert layer.sent == []  # nothing waited for the stalled layer

    layer.open.set()
    assert layer_sender.wait_until_sent(10)
    assert [message["message"]["stock"]["version"] for _, message in layer.sent] == [1, 2, 3]


def test_a_full_queue_coalesces_to_the_newest_stock_and_purchase_per_sale(monkeypatch):
    monkeypatch.setattr(layer_sender, "QUEUE_LIMIT", 3)
    layer = StallingLayer()
    layer_sender.send_soon(layer, "sale.1", stock(1, 9))  # taken by the sender, stalls there
    assert not layer_sender.wait_until_sent(0.2)
    purchase = {"type": "purchase", "saleId": 1, "userName": "Ann", "quantity": 1, "timestamp": "t"}
    layer_sender.send_soon(
        layer,
        "sale.1",
        {"type": "sale.event", "message": {"stock": stock(3, 7)["message"]["stock"], "purchase": purchase}},
    )
    layer_sender.send_soon(
        layer,
        "sale.2",
        {"type": "sale.event", "message": {"status": {"type": "status", "saleId": 2, "status": "active"}}},
    )
    layer_sender.send_soon(layer, "sale.1", stock(2, 8))  # arrives late, older version
    layer_sender.send_soon(layer, "sale.1", stock(4, 6))  # over the limit: the queue is coalesced

    layer.open.set()
    assert layer_sender.wait_until_sent(10)
    sent = [(group, message["message"]) for group, message in layer.sent]
    assert sent[0] == ("sale.1", stock(1, 9)["message"])
    assert sent[1] == ("sale.2", {"status": {"type": "status", "saleId": 2, "status": "active"}})
    # v2 came after v3 and is dropped by the coalescing; nothing is lost that a page would show.
    assert sent[2] == ("sale.1", {"stock": stock(3, 7)["message"]["stock"], "purchase": purchase})
    assert sent[3] == ("sale.1", stock(4, 6)["message"])
    assert len(sent) == 4


def test_coalescing_never_replaces_a_stock_with_an_older_version():
    queue = deque([(None, "sale.1", stock(5, 3)), (None, "sale.1", stock(4, 4))])

    [(_, group, message)] = layer_sender.coalesce(queue)

    assert group == "sale.1" and message["message"]["stock"]["version"] == 5
