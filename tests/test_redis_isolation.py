"""The test suite touches only the Redis keys it wrote (harness/redis_namespace.py).

A server running on the same Redis database as the tests (the README's examples use db 0 for both)
keeps its rate-limit counters, caches and channel groups through a test run.
"""

import subprocess
import sys
from uuid import uuid4

import pytest
from django.conf import settings
from django.core.cache import cache

from harness.redis_namespace import CACHE_KEY_PREFIX, RUN_PREFIX, client
from harness.servers import PROJECT_DIR, server_env
from tests.conftest import forget_what_tests_wrote

pytestmark = pytest.mark.redis


@pytest.fixture
def outside_key():
    """A key as a server running beside the tests writes it (its default prefix, `flashsale`)."""
    redis = client(settings.REDIS_URL)
    key = f"flashsale:1:ratelimit-of-a-running-server-{uuid4().hex}"
    redis.set(key, b"42", ex=300)
    yield key
    redis.delete(key)  # the only key here this test did not leave to the run's cleanup


def test_a_key_outside_the_runs_prefix_survives_the_cleanup_between_tests(outside_key):
    cache.set("counter", 1)
    redis = client(settings.REDIS_URL)
    [ours] = list(redis.scan_iter(match=f"{RUN_PREFIX}*"))
    assert ours.decode().startswith(f"{CACHE_KEY_PREFIX}:")

    forget_what_tests_wrote()  # what runs before and after every test

    assert cache.get("counter") is None
    assert list(redis.scan_iter(match=f"{RUN_PREFIX}*")) == []
    assert redis.get(outside_key) == b"42"


def test_a_server_the_tests_start_writes_inside_the_runs_prefix(outside_key):
    code = "from django.core.cache import cache; cache.set('written-by-a-server', 1, 60)"
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=PROJECT_DIR,
        env=server_env(),
        check=True,
        capture_output=True,
        timeout=120,
    )

    redis = client(settings.REDIS_URL)
    written = [key.decode() for key in redis.scan_iter(match="*written-by-a-server")]
    assert written == [f"{CACHE_KEY_PREFIX}:1:written-by-a-server"]
    assert cache.get("written-by-a-server") == 1  # the same namespace as this process
    forget_what_tests_wrote()
    assert list(redis.scan_iter(match="*written-by-a-server")) == []
    assert redis.get(outside_key) == b"42"
