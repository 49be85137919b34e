"""The Redis cache degrades to "no cache" while Redis is down and comes back by itself."""

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.cache import ResilientRedisCache, breaker_for
from harness.faults import redis_server
from harness.servers import free_port

pytestmark = pytest.mark.django_db


def cache_at(url: str, retry_seconds: float) -> ResilientRedisCache:
    return ResilientRedisCache(
        url, {"OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1, "RETRY_SECONDS": retry_seconds}}
    )


def test_an_unreachable_redis_answers_like_an_empty_cache_instead_of_raising():
    cache = cache_at(f"redis://127.0.0.1:{free_port()}/0", retry_seconds=60)

    assert cache.get("k", "fallback") == "fallback"
    assert cache.add("k", 1, 10) is False
    assert cache.set("k", 1) is None
    assert cache.get_many(["a", "b"]) == {}
    assert cache.has_key("k") is False
    assert cache.delete("k") is False
    assert cache.get_or_set("k", 5) == 5
    with pytest.raises(ValueError):  # what django-ratelimit expects from a cache without the key
        cache.incr("k")
    assert cache.breaker.is_open


def test_while_the_breaker_is_open_redis_is_not_contacted_then_it_is_used_again():
    with redis_server() as redis:
        cache = cache_at(redis.url, retry_seconds=60)
        cache.set("k", "stored", 60)
        redis.stop()

        assert cache.get("k") is None  # the failure opens the breaker
        redis.start()
        # Redis is back, but within the retry window the cache does not even try.
        assert cache.get("k", "skipped") == "skipped"
        # The window ends (moved, not waited for): one probe, then Redis serves again.
        cache.breaker._down_until = time.monotonic() - 1
        cache.set("k", "again", 60)
        assert cache.get("k") == "again"
        assert not cache.breaker.is_open


def test_readiness_pings_past_an_open_breaker_and_closes_it():
    with redis_server() as redis:
        cache = cache_at(redis.url, retry_seconds=60)
        redis.stop()
        assert cache.touch("k") is False  # django-redis lets touch's error through; this answers False
        assert cache.breaker.is_open
        redis.start()

        assert cache.get("k", "skipped") == "skipped"  # the window is still open
        assert cache.ping() >= 0  # the ping is not skipped: readiness sees Redis back at once
        assert not cache.breaker.is_open
        cache.set("k", "served", 60)
        assert cache.get("k") == "served"


def test_breakers_are_shared_by_every_cache_object_of_one_location():
    url = f"redis://127.0.0.1:{free_port()}/0"
    first, second = cache_at(url, 60), cache_at(url, 60)

    first.get("k")

    assert second.breaker is breaker_for(url, 60) is first.breaker
    assert second.breaker.is_open


def test_django_ratelimit_fails_open_through_a_dead_cache(settings, rf):
    from django_ratelimit.core import get_usage

    url = f"redis://127.0.0.1:{free_port()}/0"
    settings.CACHES = {
        "default": {"BACKEND": "core.cache.ResilientRedisCache", "LOCATION": url, "OPTIONS": {"RETRY_SECONDS": 60}}
    }
    settings.RATELIMIT_ENABLE = True
    request = rf.post("/")

    settings.RATELIMIT_FAIL_OPEN = True
    assert get_usage(request, group="g", key="ip", rate="1/d", increment=True) is None  # not limited
    settings.RATELIMIT_FAIL_OPEN = False
    assert get_usage(request, group="g", key="ip", rate="1/d", increment=True)["should_limit"] is True


def test_liveness_touches_no_database_and_needs_no_auth(api):
    with CaptureQueriesContext(connection) as captured:
        response = api.get("/api/v1/health")

    assert response.status_code == 200
    assert response.json()["data"] == {"status": "ok"}
    assert captured.captured_queries == []


def test_readiness_reports_each_dependency_with_its_latency(api, settings):
    response = api.get("/api/v1/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    checks = body["data"]["checks"]
    assert checks["database"]["status"] == "up"
    assert checks["database"]["latencyMs"] >= 0
    if settings.REDIS_URL:
        assert checks["redis"]["status"] == "up" and checks["redis"]["latencyMs"] >= 0
    else:
        assert checks["redis"] == {"status": "not_configured"}


def test_readiness_is_503_in_the_error_shape_when_redis_is_down(api, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "core.cache.ResilientRedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"RETRY_SECONDS": 60},
        }
    }

    response = api.get("/api/v1/health/ready")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "service_unavailable"
    checks = error["details"]["checks"]
    assert checks["database"]["status"] == "up"
    assert checks["redis"]["status"] == "down" and "latencyMs" in checks["redis"]


def test_health_probes_are_never_rate_limited(api, settings):
    settings.RATELIMIT_GLOBAL = "1/d"

    statuses = [api.get(path).status_code for path in ["/api/v1/health", "/api/v1/health/ready"] * 3]

    assert statuses == [200] * 6
    assert api.get("/api/v1/leaderboard").status_code == 200
    assert api.get("/api/v1/leaderboard").status_code == 429  # the ceiling is in force


def test_cache_objects_of_one_configuration_share_one_client():
    # Django makes a cache object per thread and per asyncio task: one client each would hold a
    # redis.Redis per open WebSocket.
    url = f"redis://127.0.0.1:{free_port()}/0"
    first, second, elsewhere = cache_at(url, 60), cache_at(url, 60), cache_at(f"{url[:-1]}1", 60)

    assert first.client is second.client
    assert elsewhere.client is not first.client
