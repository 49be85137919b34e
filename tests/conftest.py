import copy
import os

import pytest
from channels.layers import channel_layers
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from core import near_cache
from core.logging import RepeatedFailureSummary
from harness.redis_namespace import CACHE_KEY_PREFIX, CHANNEL_PREFIX, forget_run_keys
from tests.browsers import CHROMIUM, CHROMIUM_ARGS
from tests.factories import TokenFactory, UserFactory

IN_CI = bool(os.environ.get("CI"))


def _on_postgres() -> bool:
    from django.conf import settings

    return settings.DATABASES["default"]["ENGINE"] in {"django.db.backends.postgresql", "core.postgresql"}


def pytest_collection_modifyitems(config, items):
    """Tests marked `postgres` skip on SQLite locally, tests marked `redis` without REDIS_URL;
    in CI they never skip: a missing service is an error."""
    if not os.environ.get("REDIS_URL"):
        if IN_CI:
            raise pytest.UsageError("CI must run the suite with Redis: set REDIS_URL")
        for item in items:
            if "redis" in item.keywords:
                item.add_marker(pytest.mark.skip(reason="needs REDIS_URL (the channel layer shared by processes)"))
    if _on_postgres():
        return
    if IN_CI:
        raise pytest.UsageError("CI must run the suite on PostgreSQL and Redis: set DATABASE_URL and REDIS_URL")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs DATABASE_URL pointing at PostgreSQL"))


@pytest.fixture(scope="session", autouse=True)
def _redis_namespace():
    """This process's cache and channel layer write under the run's own prefixes
    (harness/redis_namespace.py); the servers the tests start get them from harness.servers.server_env."""
    if not settings.REDIS_URL:
        yield
        return
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = CACHE_KEY_PREFIX
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["prefix"] = CHANNEL_PREFIX
    try:
        with override_settings(CACHES=caches, CHANNEL_LAYERS=layers):
            yield
    finally:
        forget_run_keys()


def forget_what_tests_wrote() -> None:
    near_cache.clear_all_here()  # this process's copies of what is deleted below
    if settings.REDIS_URL:
        forget_run_keys()  # never cache.clear(): that is FLUSHDB on a database others may use
    else:
        cache.clear()  # the local-memory cache belongs to this process alone


@pytest.fixture(autouse=True)
def _fresh_cache(_redis_namespace):
    """Rate-limit counters and cached lookups must not leak from one test into the next."""
    forget_what_tests_wrote()
    yield
    forget_what_tests_wrote()


@pytest.fixture(autouse=True)
def _fresh_log_summaries():
    """Every test sees a failure it causes logged in full: a repeat of an earlier test's failure
    within LOG_REPEAT_INTERVAL_SECONDS would otherwise only be counted (core.logging)."""
    RepeatedFailureSummary.forget_all()
    yield
    RepeatedFailureSummary.forget_all()


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """A channel layer of its own for each test. channels_redis keeps receive state (per-channel
    locks, a buffer) in the layer, bound to the event loop that used it first, and each async test
    runs on a loop of its own: a lock an earlier test's loop left held failed a later test's
    receive ("bound to a different event loop"), one run in three of tests/test_realtime_hub.py."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def buyer(db):
    return UserFactory()


@pytest.fixture
def staff(db):
    return UserFactory(is_staff=True)


def client_for(user) -> APIClient:
    """An API client that sends `user`'s token in the Authorization header."""
    token = TokenFactory(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def buyer_api(buyer):
    return client_for(buyer)


@pytest.fixture
def staff_api(staff):
    return client_for(staff)


@pytest.fixture
def on_postgres():
    return connection.vendor == "postgresql"


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for the browser tests (tests/browsers.py), one per test module."""
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        # Playwright's sync API keeps an asyncio loop on this thread, and Django refuses ORM calls
        # next to a running loop. The test's ORM calls are plain blocking calls, so allow them.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
