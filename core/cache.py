"""django-redis's cache plus what it lacks: a circuit breaker, and Django's answers for a failed call.

The cache backs rate limits (django-ratelimit's RATELIMIT_FAIL_OPEN only covers a cache that answers
"no value", its issue #333) and optional lookups, so Redis being down must not turn every request
into a 500. django-redis's IGNORE_EXCEPTIONS (always on here) answers a call that cannot reach
Redis like an empty cache, but it still tries Redis on every call: with the Redis process hung (a
stopped process, a partition) each call waited out SOCKET_TIMEOUT, 1 s, measured (docs/performance.md
"Performance"), on every rate-limit check, token lookup and sale-gate read. So a failed command
opens a breaker: for CACHE_RETRY_SECONDS every command fails at once without touching the network
(1.4–11 µs a call, measured), then one probes Redis again. A dead Redis therefore costs one failed
attempt per window per process, not one per call, and the cache is used again by itself once Redis
is back.

django-redis answers None for every failed call. Where Django's cache API promises a boolean (add,
delete, has_key, touch) this answers False, and a failed incr raises ValueError as for a missing key:
django-ratelimit then applies RATELIMIT_FAIL_OPEN, and sales.gate.forget logs that it could not
invalidate.
"""

import logging
import threading
import time
from typing import Any

import redis
from django_ratelimit.core import EXPIRATION_FUDGE
from django_redis.cache import RedisCache
from django_redis.client import DefaultClient
from redis.commands.core import Script
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.patches import shared_django_redis_client

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


class BreakerOpen(RedisConnectionError):
    """Raised instead of contacting Redis; a ConnectionError, so django-redis ignores it like one."""


class BreakerRedis(redis.Redis):
    """The redis.Redis django-redis builds (REDIS_CLIENT_CLASS), every command behind a breaker.

    execute_command is where every command of a redis.Redis goes, so one override covers them all
    (scripts too: EVALSHA and SCRIPT LOAD are commands); pipelines (django-redis's set_many,
    delete_pattern) go around it, and nothing here uses them.
    """

    def __init__(self, *args, breaker: CircuitBreaker, **kwargs):
        super().__init__(*args, **kwargs)
        self.breaker = breaker

    def execute_command(self, *args, **options):
        if not self.breaker.allow():
            raise BreakerOpen(f"{self.breaker.name}: skipped for up to {self.breaker.retry_seconds} s after a failure")
        try:
            result = super().execute_command(*args, **options)
        except UNAVAILABLE as error:
            self.breaker.failed(error)
            raise
        self.breaker.succeeded()
        return result

    def probe(self) -> None:
        """PING past the breaker, closing it when Redis answers; raises if it does not."""
        super().execute_command("PING")
        self.breaker.succeeded()


# core.prefetch's one round trip: GET every read key, then count every counter as
# django-ratelimit does (add the key with 1 if absent, else INCR), a counter whose condition names a
# read only when that read found a value. KEYS: the reads, then the counters; ARGV: the number of
# reads, then per counter its expiry and the 1-based index of its condition's read (0: none).
READ_AND_COUNT = """
local reads = tonumber(ARGV[1])
local out = {}
for i = 1, reads do
  out[i] = redis.call('GET', KEYS[i])
end
for j = reads + 1, #KEYS do
  local expiry = ARGV[2 * (j - reads)]
  local condition = tonumber(ARGV[2 * (j - reads) + 1])
  if condition == 0 or out[condition] then
    if redis.call('SET', KEYS[j], 1, 'EX', expiry, 'NX') then
      out[j] = 1
    else
      out[j] = redis.call('INCR', KEYS[j])
    end
  else
    out[j] = false
  end
end
return out
"""
_read_and_count_script: Script | None = None


class ResilientRedisCache(RedisCache):
    """django-redis's RedisCache that answers like an empty cache while Redis cannot be reached.

    OPTIONS may hold RETRY_SECONDS (default 2): how long to skip Redis after a failure.
    """

    @property
    def client(self) -> DefaultClient:
        # One client per process and configuration, not one per cache object (core/patches.py).
        return shared_django_redis_client(self)

    def __init__(self, server, params):
        options = dict(params.get("OPTIONS") or {})
        retry_seconds = float(options.pop("RETRY_SECONDS", 2))
        self.breaker = breaker_for(str(server), retry_seconds)
        options.update(
            IGNORE_EXCEPTIONS=True,
            REDIS_CLIENT_CLASS="core.cache.BreakerRedis",
            REDIS_CLIENT_KWARGS={**options.get("REDIS_CLIENT_KWARGS", {}), "breaker": self.breaker},
        )
        super().__init__(server, {**params, "OPTIONS": options})

    def add(self, *args, **kwargs):
        return bool(super().add(*args, **kwargs))

    def delete(self, *args, **kwargs):
        return bool(super().delete(*args, **kwargs))

    def has_key(self, *args, **kwargs):
        return bool(super().has_key(*args, **kwargs))

    def touch(self, *args, **kwargs):
        # django-redis's client lets touch's ConnectionError through, past IGNORE_EXCEPTIONS.
        try:
            return bool(super().touch(*args, **kwargs))
        except UNAVAILABLE:
            return False

    def incr(self, key, delta=1, version=None, client=None, ignore_key_check=False):
        value = super().incr(key, delta, version, client, ignore_key_check)
        if value is None:  # Redis could not be asked: what a cache without the key says
            raise ValueError(f"Key '{key}' not found (cache unavailable)")
        return value

    def read_and_count(self, reads: list[str], counters: list) -> tuple[dict[str, Any], list[int | None]]:
        """In one round trip: the values of `reads` that exist, and each core.prefetch.Counter
        counted (None where its condition's read found nothing). Raises when Redis cannot answer."""
        global _read_and_count_script
        client = self.client
        connection = client.get_client(write=True)
        if _read_and_count_script is None:
            _read_and_count_script = connection.register_script(READ_AND_COUNT)
        keys = [client.make_key(key) for key in reads] + [client.make_key(counter.cache_key) for counter in counters]
        args: list[int] = [len(reads)]
        for counter in counters:
            args += [counter.period + EXPIRATION_FUDGE, reads.index(counter.only_if) + 1 if counter.only_if else 0]
        answer = _read_and_count_script(keys=keys, args=args, client=connection)
        answer += [None] * (len(keys) - len(answer))  # a reply drops the table's trailing nils
        values = {key: client.decode(value) for key, value in zip(reads, answer, strict=False) if value is not None}
        counts = [int(count) if count is not None else None for count in answer[len(reads) :]]
        return values, counts

    def publish(self, channel: str, message: str) -> int:
        """PUBLISH `message` on this cache's channel named `channel` (a key of this cache's, so its
        prefix applies), behind the breaker; raises when Redis cannot answer."""
        return self.client.get_client(write=True).publish(self.make_key(channel), message)

    def ping(self) -> float:
        """Round-trip time to Redis in seconds, past the breaker; raises if unreachable."""
        started = time.perf_counter()
        self.client.get_client(write=True).probe()
        return time.perf_counter() - started
