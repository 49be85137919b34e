"""Channel-layer sends leave the request at once, go out in order, one send per sale for what waited
together, and coalesce when Redis stalls."""

import asyncio
import threading
import time
from collections import deque

from prometheus_client import REGISTRY

from live import layer_sender


class StallingLayer:
    """A channel layer whose sends wait until the test lets them through, recording what went out."""

    def __init__(self):
        self.sent: list[tuple[str, dict]] = []
        self.open = threading.Event()

    async def group_send(self, group: str, message: dict) -> None:
        await asyncio.to_thread(self.open.wait, 10)
        self.sent.append((group, message))


def one_by_one(sent: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """What was sent, each batch taken apart into the messages it carries, in order."""
    return [(group, each) for group, message in sent for each in layer_sender.unbatch(message)]


def stock(version: int, current: int) -> dict:
    return {"type": "sale.event", "message": {"stock": {"saleId": 1, "currentStock": current, "version": version}}}


def test_send_soon_returns_before_the_layer_answers_and_sends_in_order():
    layer = StallingLayer()

    for version in (1, 2, 3):
        layer_sender.send_soon(layer, "sale.1", stock(version, 10 - version))
    assert layer.sent == []  # nothing waited for the stalled layer

    layer.open.set()
    assert layer_sender.wait_until_sent(10)
    assert [message["message"]["stock"]["version"] for _, message in one_by_one(layer.sent)] == [1, 2, 3]


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
    sent = [(group, message["message"]) for group, message in one_by_one(layer.sent)]
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


def purchase_event(sale_id: int, version: int) -> dict:
    purchase = {"type": "purchase", "saleId": sale_id, "userName": f"Buyer {version}", "quantity": 1, "timestamp": "t"}
    current = {"type": "stock", "saleId": sale_id, "currentStock": 100 - version, "stockVersion": version}
    return {"type": "sale.event", "message": {"stock": current, "purchase": purchase}}


def test_purchases_that_waited_together_go_out_in_one_send_per_sale_in_their_order():
    layer = StallingLayer()
    layer_sender.send_soon(layer, "sale.1", purchase_event(1, 1))  # taken by the sender, stalls there
    assert not layer_sender.wait_until_sent(0.2)
    for version in range(2, 12):  # a herd on two sales, interleaved, while the first send waits
        layer_sender.send_soon(layer, "sale.1", purchase_event(1, version))
        layer_sender.send_soon(layer, "sale.2", purchase_event(2, version))

    layer.open.set()
    assert layer_sender.wait_until_sent(10)

    # The first went alone, as it was sent before the others were queued; then one send per sale.
    assert [group for group, _ in layer.sent] == ["sale.1", "sale.1", "sale.2"]
    assert layer.sent[0][1] == purchase_event(1, 1)
    assert [message["type"] for _, message in layer.sent[1:]] == [layer_sender.BATCH] * 2
    for sale_id in (1, 2):
        received = [message for group, message in one_by_one(layer.sent) if group == f"sale.{sale_id}"]
        first = 1 if sale_id == 1 else 2
        assert received == [purchase_event(sale_id, version) for version in range(first, 12)]
        assert received[-1]["message"]["stock"]["currentStock"] == 89  # the final stock, last


def test_a_batch_is_bounded_and_the_rest_goes_in_the_next_send(monkeypatch):
    monkeypatch.setattr(layer_sender, "BATCH_LIMIT", 4)
    layer = StallingLayer()
    layer_sender.send_soon(layer, "sale.1", purchase_event(1, 1))
    assert not layer_sender.wait_until_sent(0.2)
    for version in range(2, 12):
        layer_sender.send_soon(layer, "sale.1", purchase_event(1, version))

    layer.open.set()
    assert layer_sender.wait_until_sent(10)

    assert [len(layer_sender.unbatch(message)) for _, message in layer.sent] == [1, 4, 4, 2]
    assert [message for _, message in one_by_one(layer.sent)] == [purchase_event(1, v) for v in range(1, 12)]


def failed_sends() -> float:
    return REGISTRY.get_sample_value("flashsale_channel_layer_send_failures_total") or 0.0


def test_a_failed_batch_counts_every_message_it_carried_as_a_failed_send():
    class FailingLayer(StallingLayer):
        async def group_send(self, group: str, message: dict) -> None:
            await super().group_send(group, message)
            raise RuntimeError("channel layer gone")

    layer = FailingLayer()
    failures = failed_sends()
    layer_sender.send_soon(layer, "sale.1", purchase_event(1, 1))
    assert not layer_sender.wait_until_sent(0.2)
    for version in range(2, 6):
        layer_sender.send_soon(layer, "sale.1", purchase_event(1, version))

    layer.open.set()
    assert layer_sender.wait_until_sent(10)

    assert len(layer.sent) == 2  # the first alone, then the four that waited in one send
    assert failed_sends() - failures == 5


def test_a_message_alone_goes_out_as_it_is_and_unbatch_gives_back_what_a_batch_carries():
    first, second = purchase_event(1, 1), purchase_event(1, 2)

    [(_, _, alone, count)] = layer_sender.batches([(None, "sale.1", first)])
    [(_, _, both, carried)] = layer_sender.batches([(None, "sale.1", first), (None, "sale.1", second)])

    assert (alone, count) == (first, 1)
    assert layer_sender.unbatch(alone) == [first]
    assert both == {"type": layer_sender.BATCH, "messages": [first, second]} and carried == 2
    assert layer_sender.unbatch(both) == [first, second]


def test_a_herds_pushes_gather_for_the_send_interval_and_the_first_after_a_quiet_spell_goes_at_once(settings):
    settings.CHANNEL_LAYER_SEND_INTERVAL_MS = 1000

    class TimedLayer:
        def __init__(self):
            self.sent: list[tuple[float, dict]] = []

        async def group_send(self, group: str, message: dict) -> None:
            self.sent.append((time.monotonic(), message))

    layer = TimedLayer()
    time.sleep(1.0)  # a quiet spell: the rounds of the tests before are over
    queued = time.monotonic()
    layer_sender.send_soon(layer, "sale.1", purchase_event(1, 1))
    for version in range(2, 7):
        time.sleep(0.05)  # purchases committing one after another, each queueing its push
        layer_sender.send_soon(layer, "sale.1", purchase_event(1, version))
    assert layer_sender.wait_until_sent(10)

    (first_at, first), (batch_at, batch) = layer.sent
    assert first == purchase_event(1, 1)
    assert first_at - queued < 0.5  # not held for the interval
    # The five queued while the interval ran went out together, in their order, once it was over.
    assert layer_sender.unbatch(batch) == [purchase_event(1, version) for version in range(2, 7)]
    assert batch_at - first_at >= 0.95
