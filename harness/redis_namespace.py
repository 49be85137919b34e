"""The Redis keys a test run owns.

Tests share Redis with whatever else uses the REDIS_URL they are given (the README's examples point a
running server and the tests at the same database), so a run writes its cache entries and channel-layer
messages under a prefix of its own, in this process and in the servers it starts, and deletes only keys
under that prefix: never FLUSHDB, which wiped a running server's rate limits, caches and groups.
"""

import os
import secrets

import redis
from django.conf import settings

# Unique per run, so two runs on one Redis (several checkouts, CI beside a developer) cannot clean up
# each other's keys either.
RUN_PREFIX = f"flashsale-test-{os.getpid()}-{secrets.token_hex(4)}"
# Django stores "<KEY_PREFIX>:<version>:<key>"; channels_redis starts every key and channel name with its prefix.
CACHE_KEY_PREFIX = f"{RUN_PREFIX}-cache"
CHANNEL_PREFIX = f"{RUN_PREFIX}-channels"

_clients: dict[str, redis.Redis] = {}


def scoped(name: str) -> str:
    """A name inside this run's namespace, e.g. a channel prefix for servers that must share one."""
    return f"{RUN_PREFIX}-{name}"


def client(url: str) -> redis.Redis:
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url)
    return _clients[url]


def forget_run_keys() -> int:
    """Delete every key this run wrote to the REDIS_URL database; returns how many."""
    if not settings.REDIS_URL:
        return 0
    connection = client(settings.REDIS_URL)
    deleted = 0
    batch = []
    # Only the glob's literal prefix: RUN_PREFIX holds no glob characters.
    for key in connection.scan_iter(match=f"{RUN_PREFIX}*", count=1000):
        batch.append(key)
        if len(batch) == 500:
            deleted += connection.delete(*batch)
            batch = []
    if batch:
        deleted += connection.delete(*batch)
    return deleted
