"""Prometheus metrics an operator watches during a sale, served at /metrics to holders of METRICS_TOKEN.

The production topology runs several processes per host (gunicorn workers, Daphne processes), and a
scrape reaches only one of them. With PROMETHEUS_MULTIPROC_DIR set (deploy/run sets it) every process
writes its values to memory-mapped files in that directory and a scrape adds them up, so the figures
are the host's, whichever process answers. The directory must be emptied before the processes start;
gunicorn's child_exit hook (deploy/gunicorn.conf.py) and Daphne's exit (flashsale.asgi) drop a dead
process's live gauges.

On a request's path a metric costs one counter increment, an mmap write; nothing here takes a lock
held across I/O or asks the database.
"""

import atexit
import hmac
import os
import time

from django.conf import settings
from django.db import connection
from django.http import HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from core.error_codes import ErrorCode
from core.errors import json_error

# A route label per URL pattern, never per path: unknown paths (scanners, typos) share one label
# so they cannot grow the number of series without bound.
UNMATCHED_ROUTE = "unmatched"
# Methods are labels as they are only when standard (RFC 9110, PATCH): a made-up method per request
# grew the metrics directory and a scrape without bound (issue 25, finding 3).
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
OTHER_METHOD = "other"
REQUEST_LATENCY = Histogram(
    "flashsale_request_duration_seconds",
    "Time from the first middleware to the response, per URL route and method",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DB_POOL_REQUESTS_QUEUED = Counter(
    "flashsale_db_pool_waits", "Requests for a pooled database connection that had to wait for one"
)
DB_POOL_WAIT_SECONDS = Counter(
    "flashsale_db_pool_wait_seconds", "Time requests spent waiting for a pooled database connection"
)
DB_POOL_ERRORS = Counter(
    "flashsale_db_pool_errors", "Requests for a pooled database connection that failed (timeout, pool closed)"
)
DB_POOL_WAITING = Gauge(
    "flashsale_db_pool_waiting",
    "Requests waiting for a pooled connection when last sampled",
    multiprocess_mode="livesum",
)
OPEN_WEBSOCKETS = Gauge(
    "flashsale_open_websockets",
    "WebSocket connections open, per process (pid label in multiprocess mode)",
    multiprocess_mode="liveall",
)
CHANNEL_LAYER_SEND_FAILURES = Counter(
    "flashsale_channel_layer_send_failures", "Broadcasts to the channel layer that failed (pushes clients missed)"
)
CHANNEL_LAYER_SENDS_COALESCED = Counter(
    "flashsale_channel_layer_sends_coalesced",
    "Queued broadcasts merged into a newer one for the same group while the channel layer did not keep up",
)

# psycopg_pool keeps its own counters; they are moved into the metrics at most this often per
# process, at the end of a request, so a request pays for a clock read and a comparison.
POOL_SAMPLE_INTERVAL = 1.0
_next_pool_sample = 0.0


def sample_db_pool() -> None:
    """Move psycopg_pool's counters since the last sample into the metrics (pop_stats resets them)."""
    global _next_pool_sample
    _next_pool_sample = time.monotonic() + POOL_SAMPLE_INTERVAL
    # Only a pool this process already opened: reading `connection.pool` would open one.
    pool = getattr(connection, "_connection_pools", {}).get(connection.alias)
    if pool is None:
        return
    stats = pool.pop_stats()
    DB_POOL_REQUESTS_QUEUED.inc(stats.get("requests_queued", 0))
    DB_POOL_WAIT_SECONDS.inc(stats.get("requests_wait_ms", 0) / 1000)
    DB_POOL_ERRORS.inc(stats.get("requests_errors", 0))
    DB_POOL_WAITING.set(stats.get("requests_waiting", 0))


def method_label(method: str | None) -> str:
    return method if method in STANDARD_METHODS else OTHER_METHOD


class MetricsMiddleware:
    """Outermost middleware: latency per route for every request. A layer that answers before URL
    resolution names its route in `request.route_label` (the apps count their own outcomes)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        match = getattr(request, "resolver_match", None)
        if match is not None:
            route = match.route
        else:
            route = getattr(request, "route_label", UNMATCHED_ROUTE)
        REQUEST_LATENCY.labels(route=route, method=method_label(request.method)).observe(elapsed)
        if time.monotonic() >= _next_pool_sample:
            sample_db_pool()
        return response


def count_open_websockets(app):
    """Wrap an ASGI app so its WebSocket connections are counted in OPEN_WEBSOCKETS while they last.

    `send` is handed through untouched: live/socket_limits.py reaches through it to Daphne's
    protocol (a wrapped `send` hid it, and the hub's 1013 closes silently did nothing). A handshake
    that is refused is counted for the moment it takes.
    """

    async def counted(scope, receive, send):
        if scope["type"] != "websocket":
            return await app(scope, receive, send)
        OPEN_WEBSOCKETS.inc()
        try:
            return await app(scope, receive, send)
        finally:
            OPEN_WEBSOCKETS.dec()

    return counted


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def forget_this_process_at_exit() -> None:
    """A process outside gunicorn (Daphne) drops its live gauges when it exits cleanly."""
    if multiprocess_dir():
        atexit.register(multiprocess.mark_process_dead, os.getpid())


def _authorised(request) -> bool:
    expected = f"Bearer {settings.METRICS_TOKEN}".encode()
    given = request.META.get("HTTP_AUTHORIZATION", "").encode()
    return hmac.compare_digest(given, expected)


def metrics_view(request):
    """The exposition, for holders of METRICS_TOKEN only; without a token configured it does not exist."""
    if not settings.METRICS_TOKEN:
        return json_error(ErrorCode.NOT_FOUND)
    if not _authorised(request):
        return json_error(ErrorCode.PERMISSION_DENIED)
    sample_db_pool()
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
