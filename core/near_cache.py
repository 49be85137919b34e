"""A process's own copy of a few Redis answers, for a fraction of a second.

Under a herd nearly every request asks Redis the same two things: whose is this token, and does the
sale gate refuse this sale. A `NearCache` keeps what Redis answered in the process's memory for at
most LOCAL_CACHE_MS (token copies: LOCAL_TOKEN_CACHE_MS), counted from when Redis was asked, so the
next requests skip the round trip (docs/performance.md "A gated refusal without Redis").

Invalidation: whoever changes such an entry in Redis then calls `drop`: this process's copy goes at
once, and a message on Redis pub/sub tells every other process, whose listener thread drops its copy
when the message arrives (milliseconds). A copy read from Redis before a drop is never kept after it
(`put` takes the moment its read began). A lost message (the listener's connection broke; it drops
everything when it subscribes again) leaves a copy at most LOCAL_CACHE_MS old: that is the
bound on staleness, and each user of a NearCache says what it may cost (docs/design.md).

Copies are kept only while this process's listener is subscribed, and only with the Redis cache
(core.cache.ResilientRedisCache): without it there is no other process to hear from, and the
local-memory cache is this process's memory already. Redis's own client-side caching (CLIENT
TRACKING) would invalidate per key by itself, but only for plain GETs, not for the request's one
scripted round trip (core.prefetch), and with no bound in time.
"""

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger("flashsale.cache")

CHANNEL = "near-cache"  # made a key of the cache's (its prefix: one channel per deployment or test run)
MAX_ENTRIES = 100_000
# How often the listener's idle connection is checked with a PING, and how long it waits to reconnect.
HEALTH_CHECK_SECONDS = 5
RECONNECT_SECONDS = 1.0

_DROPPED = object()
_caches: dict[str, "NearCache"] = {}
_listening = threading.Event()
_listener_pid: int | None = None
_listener_lock = threading.Lock()


class NearCache:
    """Copies of Redis entries named by string keys; `name` is what drop messages call it."""

    def __init__(self, name: str, *, lifetime_setting: str = "LOCAL_CACHE_MS"):
        assert " " not in name and name not in _caches
        self.name = name
        # The setting that says, in milliseconds, how long a copy is served after its read.
        self.lifetime_setting = lifetime_setting
        # key -> (value, when its read began) or (_DROPPED, when it was dropped); monotonic seconds.
        self._entries: dict[str, tuple[Any, float]] = {}
        self._cleared_at = 0.0
        self._lock = threading.Lock()  # for writers only: a put must not overwrite a drop it missed
        _caches[name] = self

    def get(self, key: str) -> Any | None:
        """The copy of `key`, if one younger than the cache's lifetime setting is kept."""
        entry = self._entries.get(key)
        if entry is None or entry[0] is _DROPPED:
            return None
        if (time.monotonic() - entry[1]) * 1000 >= getattr(settings, self.lifetime_setting):
            return None
        return entry[0]

    def put(self, key: str, value: Any, *, read_at: float) -> None:
        """Keep `value`, which Redis answered for `key` to a read that began at `read_at`
        (time.monotonic()), unless `key` was dropped since, or copies cannot be kept now."""
        if not _listening.is_set():
            start_listener()
            return
        with self._lock:
            entry = self._entries.get(key)
            if read_at <= self._cleared_at or (entry is not None and entry[0] is _DROPPED and read_at <= entry[1]):
                return
            if len(self._entries) >= MAX_ENTRIES:
                self._clear_here()
                return
            self._entries[key] = (value, read_at)

    def drop(self, keys: Iterable[str]) -> None:
        """Forget `keys` in this process now and tell the others. Call after Redis was changed."""
        keys = list(keys)
        self.drop_here(keys)
        if not hasattr(cache, "publish") or not keys:
            return
        try:
            cache.publish(CHANNEL, " ".join([self.name, *keys]))
        except Exception:
            logger.error(
                "near cache %s: could not tell other processes; their copies live at most %s ms",
                self.name,
                settings.LOCAL_CACHE_MS,
                exc_info=True,
            )

    def drop_here(self, keys: Iterable[str]) -> None:
        dropped = (_DROPPED, time.monotonic())
        with self._lock:
            for key in keys:
                self._entries[key] = dropped

    def clear_here(self) -> None:
        with self._lock:
            self._clear_here()

    def _clear_here(self) -> None:
        self._entries = {}
        self._cleared_at = time.monotonic()


def clear_all_here() -> None:
    """Drop every copy every NearCache of this process keeps (what tests call between tests)."""
    for near in list(_caches.values()):
        near.clear_here()


def listening() -> threading.Event:
    """Set while this process's listener is subscribed, that is while copies are kept."""
    return _listening


def start_listener() -> None:
    global _listener_pid
    if _listener_pid == os.getpid() or settings.LOCAL_CACHE_MS <= 0 or not hasattr(cache, "publish"):
        return
    with _listener_lock:
        # Per process: a worker forked from a parent that had the thread does not have it.
        if _listener_pid != os.getpid():
            _listening.clear()
            clear_all_here()
            channel = cache.make_key(CHANNEL)
            location = settings.CACHES["default"]["LOCATION"]
            threading.Thread(target=_listen_forever, args=(location, channel), name="near-cache", daemon=True).start()
            _listener_pid = os.getpid()


def _listen_forever(location: str, channel: str) -> None:
    while True:
        try:
            _listen(location, channel)
        except Exception as error:
            if _listening.is_set():
                logger.warning("near cache: listener lost Redis, copies dropped until it is back: %s", error)
        _listening.clear()
        clear_all_here()
        time.sleep(RECONNECT_SECONDS)


def _listen(location: str, channel: str) -> None:
    # Its own connection, blocking only in get_message's wait; a dead peer is found by the PING.
    client = redis.Redis.from_url(
        location, socket_connect_timeout=1, socket_keepalive=True, health_check_interval=HEALTH_CHECK_SECONDS
    )
    with client.pubsub() as pubsub:
        pubsub.subscribe(channel)
        while True:
            message = pubsub.get_message(timeout=HEALTH_CHECK_SECONDS)
            if message is None:
                continue
            if message["type"] == "subscribe":
                # Also after redis-py reconnected by itself: whatever was published meanwhile is lost.
                clear_all_here()
                _listening.set()
            elif message["type"] == "message":
                _dropped(message["data"].decode())


def _dropped(message: str) -> None:
    name, *keys = message.split(" ")
    near = _caches.get(name)
    if near is not None:
        near.drop_here(keys)
