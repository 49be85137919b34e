"""Send to the channel layer from sync code without an event loop per message.

`async_to_sync(layer.group_send)` called from a thread with no event loop (a gunicorn worker, the
HTTP side of the production topology) starts a new event loop in a new thread for every call, and
channels_redis keeps its Redis connections per event loop, so every purchase also opened and closed
a Redis connection: about a fifth of a purchase's CPU time in the profile (docs/performance.md "Performance").
Here each process keeps one long-lived loop in a daemon thread.

A request does not wait for the send either (`send_soon`): the buyer waits for the decision, and a
hung Redis held every purchase for the send's timeout after its commit (issue 25, finding 4). The
message goes to a bounded queue that one daemon thread per process (`_Sender`) drains in order
through that loop; when a Redis outage fills it, the queue is coalesced to one message per group
carrying the newest of each kind (the newest stock by version), which is all a page shows, so the
final stock still goes out once Redis answers again. docs/performance.md "No push work in the
purchase request" has the figures against waiting for the send and against the database feed.

Each time the sender thread wakes it takes everything waiting (up to BATCH_LIMIT) and sends each
group's messages in ONE `group_send`, as a `{"type": BATCH, "messages": [...]}` in their order
(`unbatch` gives them back; the hub, live/hub.py, handles them one by one as if sent apart). A
`group_send` costs the same Redis round trips and Lua script whatever it carries, so under a herd,
when purchases commit faster than one send takes, the sender's CPU per purchase is divided by the
number that waited; one message alone goes out as it is. The rounds come at most once per
CHANNEL_LAYER_SEND_INTERVAL_MS, so in a herd what that interval gathers shares a send; the first
message after a quiet spell goes at once. The hub flushes stock to pages every
STOCK_PUSH_INTERVAL_MS anyway, so a page sees no difference.
"""

import asyncio
import atexit
import logging
import os
import threading
import time
from collections import deque
from typing import Any

from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError

from core import metrics

logger = logging.getLogger("flashsale.realtime")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None

# Bounded, so a hung Redis cannot hold a request (which already committed) forever.
SEND_TIMEOUT_SECONDS = 5


def _sender_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_pid
    with _lock:
        # A forked worker inherits the variable but not the thread: start its own.
        if _loop is None or _loop_pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="channel-layer-sender", daemon=True).start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop


def uses_network(layer) -> bool:
    """Layers that talk to Redis are safe to drive from any loop; in-memory ones are not."""
    return type(layer).__module__.startswith("channels_redis")


def group_send(layer, group: str, message: dict) -> None:
    """`layer.group_send(group, message)` from sync code, on this process's sender loop, waiting for
    Redis's answer (at most SEND_TIMEOUT_SECONDS; the send is cancelled then)."""
    future = asyncio.run_coroutine_threadsafe(_group_send(layer, group, message), _sender_loop())
    try:
        future.result(timeout=SEND_TIMEOUT_SECONDS)
    except BaseException:
        future.cancel()
        raise


# Messages waiting for the sender thread, at most, before they are coalesced. A process sends a
# few hundred a second in a herd; the queue only fills while Redis does not answer.
QUEUE_LIMIT = 1000


# Messages taken from the queue for one round of sends, at most: a bound on the size of one batch
# that every receiving process unpacks (a full queue, after a stall, goes out in a few rounds).
BATCH_LIMIT = 100
# The type of a message carrying several messages to one group, in the order they were queued.
BATCH = "layer.batch"


def send_interval() -> float:
    """Seconds between the sender's rounds, at least (CHANNEL_LAYER_SEND_INTERVAL_MS)."""
    return getattr(settings, "CHANNEL_LAYER_SEND_INTERVAL_MS", 0) / 1000


def send_soon(layer, group: str, message: dict) -> None:
    """Queue `layer.group_send(group, message)` for this process's sender thread and return at once.

    Messages go out in the order they were queued. Failures are logged and counted by the sender.
    """
    _sender().put(layer, group, message)


def wait_until_sent(timeout: float = 10) -> bool:
    """Block until every message queued so far in this process was sent or given up (tests, benches)."""
    return _sender().drain(timeout)


class _Sender:
    """One daemon thread per process that sends queued messages in order, one `group_send` per
    group for what waited together."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.condition = threading.Condition()
        self.queue: deque[tuple[Any, str, dict]] = deque()
        self.busy = False
        threading.Thread(target=self._run, name="channel-layer-queue", daemon=True).start()
        # A short-lived process (a management command that edited a sale) sends what it queued.
        atexit.register(self.drain, SEND_TIMEOUT_SECONDS)

    def put(self, layer, group: str, message: dict) -> None:
        with self.condition:
            if len(self.queue) >= QUEUE_LIMIT:
                before = len(self.queue)
                self.queue = coalesce(self.queue)
                metrics.CHANNEL_LAYER_SENDS_COALESCED.inc(before - len(self.queue))
                while len(self.queue) >= QUEUE_LIMIT:  # more groups than the limit: the oldest goes
                    self.queue.popleft()
                    metrics.CHANNEL_LAYER_SEND_FAILURES.inc()
            self.queue.append((layer, group, message))
            self.condition.notify_all()

    def drain(self, timeout: float) -> bool:
        with self.condition:
            return self.condition.wait_for(lambda: not self.queue and not self.busy, timeout=timeout)

    def _run(self) -> None:
        next_round = 0.0
        while True:
            with self.condition:
                self.busy = False
                self.condition.notify_all()
                self.condition.wait_for(lambda: bool(self.queue))
                # The first message after a quiet spell goes at once; in a herd the rounds come at
                # most once per interval, so what the interval gathers shares one group_send.
                while len(self.queue) < BATCH_LIMIT and (delay := next_round - time.monotonic()) > 0:
                    self.condition.wait(delay)
                waiting = [self.queue.popleft() for _ in range(min(len(self.queue), BATCH_LIMIT))]
                self.busy = True
            next_round = time.monotonic() + send_interval()
            for layer, group, message, count in batches(waiting):
                try:
                    group_send(layer, group, message)
                except Exception:
                    metrics.CHANNEL_LAYER_SEND_FAILURES.inc(count)
                    # One record per message lost, as when each went alone: the log's summary of
                    # repeats then counts the pushes that failed (core.logging.RepeatedFailureSummary).
                    for _ in range(count):
                        logger.exception("broadcast to %s failed", group)


def batches(waiting: list[tuple[Any, str, dict]]) -> list[tuple[Any, str, dict, int]]:
    """(layer, group, message, how many it carries): one per (layer, group), at the place of the
    group's first message, so nothing waits behind what was queued after it; a group's several
    messages become one BATCH message carrying them in their order."""
    grouped: dict[tuple[int, str], tuple[Any, str, list[dict]]] = {}
    for layer, group, message in waiting:
        grouped.setdefault((id(layer), group), (layer, group, []))[2].append(message)
    return [
        (layer, group, messages[0] if len(messages) == 1 else {"type": BATCH, "messages": messages}, len(messages))
        for layer, group, messages in grouped.values()
    ]


def unbatch(message: dict) -> list[dict]:
    """The messages a received message carries: those of a BATCH in their order, else itself."""
    if message.get("type") == BATCH:
        return message["messages"]
    return [message]


def coalesce(queue: deque) -> deque:
    """One message per (layer, group, type), placed where the group's newest one was, carrying the
    newest value of each part (`stock` by version, the others by arrival); the hub takes a
    `sale.event` with any of its parts. Messages of other shapes keep only their newest."""
    merged: dict[tuple, tuple[Any, str, dict]] = {}
    for layer, group, message in queue:
        key = (id(layer), group, message.get("type"))
        earlier = merged.pop(key, None)  # popped, so the merged one moves to this newer position
        if earlier is not None and isinstance(message.get("message"), dict):
            parts = {**earlier[2]["message"]}
            for part, value in message["message"].items():
                older = parts.get(part)
                if part == "stock" and older is not None and older["version"] > value["version"]:
                    continue
                parts[part] = value
            message = {**message, "message": parts}
        merged[key] = (layer, group, message)
    return deque(merged.values())


_sender_instance: _Sender | None = None


def _sender() -> _Sender:
    global _sender_instance
    with _lock:
        # A forked worker inherits the object but not its thread: start its own.
        if _sender_instance is None or _sender_instance.pid != os.getpid():
            _sender_instance = _Sender()
        return _sender_instance


async def _group_send(layer, group: str, message: dict) -> None:
    try:
        await layer.group_send(group, message)
    except RedisConnectionError:
        # The first pushes after a Redis restart were lost to closed idle connections. A closed
        # connection fails on the send's first command, before anything was delivered, so drop them
        # all and send once more. A Redis that is down fails again at once.
        await drop_idle_connections(layer)
        await layer.group_send(group, message)


async def drop_idle_connections(layer: Any) -> None:
    """Close the channel layer's idle pooled Redis connections (channels_redis keeps a pool per host;
    the in-memory layer has none). After a Redis restart every one of them is dead and fails once on
    its next use, since redis-py does not retry there. In-use connections are left to their callers."""
    for index in range(getattr(layer, "ring_size", 0)):
        await layer.connection(index).connection_pool.disconnect(inuse_connections=False)
