"""A Redis cache that degrades to "no cache" while Redis is unreachable, instead of raising.

Django's RedisCache lets redis-py's ConnectionError/TimeoutError escape into the caller. The
cache backs rate limits (django-ratelimit's RATELIMIT_FAIL_OPEN only covers a cache that answers
"no value", its issue #333) and optional lookups, so an outage would otherwise turn every request
into a 500. Here a failed call answers like an empty cache (get → default, add → False, incr →
ValueError as for a missing key, writes → no-op) and opens a circuit breaker: for
CACHE_RETRY_SECONDS every call answers at once without touching the network, then one call probes
Redis again. A dead Redis therefore costs one failed attempt per window per process, not one per
request, and the service uses Redis again by itself once it is back.
"""

import logging
import threading
import time

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flashsale.redis_client import ReusingRedisCacheClient

logger = logging.getLogger("flashsale.cache")

UNAVAILABLE = (RedisConnectionError, RedisTimeoutError)


class CircuitBreaker:
    """Shared by every thread's cache object for one Redis location."""

    def __init__(self, name: str, retry_seconds: float):
        self.name = name
        self.retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._down_until = 0.0  # 0: closed (Redis is believed up)

    @property
    def is_open(self) -> bool:
        return self._down_until != 0.0

    def allow(self) -> bool:
        if self._down_until == 0.0:
            return True
        now = time.monotonic()
        with self._lock:
            if now < self._down_until:
                return False
            # This caller probes; everyone else keeps skipping Redis until the probe tells.
            self._down_until = now + self.retry_seconds
            return True

    def failed(self, error: Exception) -> None:
        with self._lock:
            was_closed = self._down_until == 0.0
            self._down_until = time.monotonic() + self.retry_seconds
        if was_closed:
            logger.error("redis unreachable, cache disabled for now: %s", error, extra={"cache": self.name})

    def succeeded(self) -> None:
        if self._down_until != 0.0:
            with self._lock:
                self._down_until = 0.0
            logger.warning("redis reachable again, cache enabled", extra={"cache": self.name})


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(location: str, retry_seconds: float) -> CircuitBreaker:
    with _breakers_lock:
        if location not in _breakers:
            _breakers[location] = CircuitBreaker(location, retry_seconds)
        return _breakers[location]


class _Unavailable(Exception):
    pass


class ResilientRedisCache(RedisCache):
    """RedisCache that answers like an empty cache while Redis cannot be reached.

    OPTIONS may hold RETRY_SECONDS (default 2): how long to skip Redis after a failure.
    """

    def __init__(self, server, params):
        options = dict(params.get("OPTIONS") or {})
        retry_seconds = float(options.pop("RETRY_SECONDS", 2))
        super().__init__(server, {**params, "OPTIONS": options})
        # One redis.Redis per pool instead of one per call (flashsale/redis_client.py).
        self._class = ReusingRedisCacheClient
        self.breaker = breaker_for(str(server), retry_seconds)

    def _guarded(self, call, *args, **kwargs):
        if not self.breaker.allow():
            raise _Unavailable
        try:
            result = call(*args, **kwargs)
        except UNAVAILABLE as error:
            self.breaker.failed(error)
            raise _Unavailable from error
        self.breaker.succeeded()
        return result

    def _or(self, fallback, call, *args, **kwargs):
        try:
            return self._guarded(call, *args, **kwargs)
        except _Unavailable:
            return fallback

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._or(False, super().add, key, value, timeout, version)

    def get(self, key, default=None, version=None):
        return self._or(default, super().get, key, default, version)

    def set(self, *args, **kwargs):
        return self._or(None, super().set, *args, **kwargs)

    def touch(self, *args, **kwargs):
        return self._or(False, super().touch, *args, **kwargs)

    def delete(self, *args, **kwargs):
        return self._or(False, super().delete, *args, **kwargs)

    def get_many(self, *args, **kwargs):
        return self._or({}, super().get_many, *args, **kwargs)

    def has_key(self, *args, **kwargs):
        return self._or(False, super().has_key, *args, **kwargs)

    def incr(self, key, delta=1, version=None):
        try:
            return self._guarded(super().incr, key, delta, version)
        except _Unavailable:
            # What a cache without the key says; django-ratelimit then applies RATELIMIT_FAIL_OPEN.
            raise ValueError(f"Key '{key}' not found (cache unavailable)") from None

    def set_many(self, data, *args, **kwargs):
        return self._or(list(data), super().set_many, data, *args, **kwargs)

    def delete_many(self, *args, **kwargs):
        return self._or(None, super().delete_many, *args, **kwargs)

    def clear(self):
        return self._or(False, super().clear)

    def ping(self) -> float:
        """Round-trip time to Redis in seconds, bypassing the breaker; raises if unreachable."""
        started = time.perf_counter()
        self._cache.get_client(write=True).ping()
        elapsed = time.perf_counter() - started
        self.breaker.succeeded()
        return elapsed
