"""One cache round trip per API request: what a request will read and count, fetched together.

Apps register planners (`planner`): functions that look at the raw request (path, headers, body)
and name the cache keys it will read and the rate-limit counters it will count. The first
middleware that asks the cache (core.middleware.GlobalRateLimitMiddleware) runs them, adds its
own counter and sends everything to Redis in one call (`ResilientRedisCache.read_and_count`, a Lua
script loaded once). What came back is kept for the rest of the request in a context variable:
readers (`cached`, `cached_many`) and rate limits (`counted`) take it from there and ask the cache
themselves only for what was not planned, so nothing is read twice between the fast path and the view.

If the call fails (Redis down, the breaker open) or the cache has no such call (the local-memory
cache without REDIS_URL), nothing is kept and every reader asks the cache itself, exactly as
before: the outage behaviour stays the one tests/test_faults_cache.py and friends prove.
"""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache

logger = logging.getLogger("flashsale.cache")


@dataclass(frozen=True)
class Counter:
    """One django-ratelimit counter, as core.ratelimit.planned_counter computes its key."""

    group: str
    cache_key: str
    value: str  # what the limit is keyed by (an address, a user id)
    limit: int
    period: int
    window: int
    only_if: str | None = None  # count only when this planned read finds a value (a cached token)


@dataclass
class Plan:
    reads: list[str] = field(default_factory=list)
    counters: list[Counter] = field(default_factory=list)


@dataclass(frozen=True)
class Fetched:
    values: dict[str, Any]  # planned reads that found a value
    reads: frozenset[str]  # every planned read, found or not
    counts: dict[tuple[str, str], int]  # (group, value) -> the count after this request
    read_at: float  # time.monotonic() when the round trip began (core.near_cache keeps copies by it)


_fetched: ContextVar[Fetched | None] = ContextVar("flashsale_prefetched", default=None)
_planners: list[Callable[[Any, Plan], None]] = []


def planner(function: Callable[[Any, Plan], None]) -> Callable[[Any, Plan], None]:
    """Register `function(request, plan)`, which adds what `request` will read or count to `plan`.
    It must be cheap and must not raise for any input: the request has not been validated yet."""
    _planners.append(function)
    return function


@contextmanager
def fetched_for(request: Any, plan: Plan) -> Iterator[Fetched | None]:
    """Complete `plan` with every planner, fetch it in one call, and keep it for this request."""
    for add in _planners:
        add(request, plan)
    fetched = _fetch(plan) if plan.reads or plan.counters else None
    token = _fetched.set(fetched)
    try:
        yield fetched
    finally:
        _fetched.reset(token)


def _fetch(plan: Plan) -> Fetched | None:
    read_and_count = getattr(cache, "read_and_count", None)
    if read_and_count is None:
        return None
    read_at = time.monotonic()
    try:
        values, counts = read_and_count(plan.reads, plan.counters)
    except Exception:  # the readers ask the cache themselves, which logs and degrades as before
        logger.debug("prefetch failed; readers ask the cache themselves", exc_info=True)
        return None
    return Fetched(
        values=values,
        reads=frozenset(plan.reads),
        counts={
            (counter.group, counter.value): count
            for counter, count in zip(plan.counters, counts, strict=True)
            if count is not None
        },
        read_at=read_at,
    )


def cached(key: str) -> tuple[bool, Any]:
    """(True, value or None) when this request already read `key`; (False, None) when it did not."""
    fetched = _fetched.get()
    if fetched is None or key not in fetched.reads:
        return False, None
    return True, fetched.values.get(key)


def cached_many(keys: list[str]) -> dict[str, Any] | None:
    """What `cache.get_many(keys)` would answer, when this request already read every one of them."""
    fetched = _fetched.get()
    if fetched is None or not fetched.reads.issuperset(keys):
        return None
    return {key: fetched.values[key] for key in keys if key in fetched.values}


def read_at() -> float | None:
    """When this request's round trip began (time.monotonic()), if it made one."""
    fetched = _fetched.get()
    return fetched.read_at if fetched is not None else None


def has_counts() -> bool:
    """Whether this request's round trip counted any rate limit."""
    fetched = _fetched.get()
    return fetched is not None and bool(fetched.counts)


def counted(group: str, value: str) -> int | None:
    """The count this request already added to `group`'s counter for `value`, if it did."""
    fetched = _fetched.get()
    if fetched is None:
        return None
    return fetched.counts.get((group, value))
