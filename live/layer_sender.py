"""Send to the channel layer from sync code without an event loop per message.

`async_to_sync(layer.group_send)` called from a thread with no event loop (a gunicorn worker, the
HTTP side of the production topology) starts a new event loop in a new thread for every call, and
channels_redis keeps its Redis connections per event loop, so every purchase also opened and closed
a Redis connection: about a fifth of a purchase's CPU time in the profile (docs/performance.md "Performance").
Here each process keeps one long-lived loop in a daemon thread; senders hand it the coroutine and
wait for the result, so ordering and error reporting are the same as before.
"""

import asyncio
import os
import threading
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

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
    """`layer.group_send(group, message)` from sync code, on this process's sender loop."""
    future = asyncio.run_coroutine_threadsafe(_group_send(layer, group, message), _sender_loop())
    future.result(timeout=SEND_TIMEOUT_SECONDS)


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
