"""Readiness: can this process reach what it needs to serve? For load balancers and orchestrators.

Liveness (`flashsale.views.health`) touches nothing; readiness checks the database and, when
configured, Redis, reporting each with its latency, and answers 503 when one is down. Neither check
hangs on a dead dependency: the database backend fails fast once it knows the server is gone
(flashsale.postgresql), the cache has one-second socket timeouts.
"""

import time

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

from flashsale.error_codes import ErrorCode
from flashsale.errors import json_error
from flashsale.views import probe


def _timed(check) -> dict:
    started = time.perf_counter()
    try:
        check()
    except Exception as error:  # any failure means "not ready", reported by its type only
        return {"status": "down", "latencyMs": _ms(started), "error": type(error).__name__}
    return {"status": "up", "latencyMs": _ms(started)}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _check_database() -> None:
    # The same path as a request: fails at once while the database is known to be unreachable
    # (flashsale.postgresql), and waits for a pooled connection like a request would.
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


@probe
def ready(request):
    """GET /api/v1/health/ready: 200 when the database and Redis answer, else 503."""
    checks = {"database": _timed(_check_database)}
    if hasattr(cache, "ping"):
        checks["redis"] = _timed(cache.ping)
    else:
        checks["redis"] = {"status": "not_configured"}
    if any(check["status"] == "down" for check in checks.values()):
        return json_error(
            ErrorCode.SERVICE_UNAVAILABLE, "A dependency of the service is unavailable.", {"checks": checks}
        )
    return JsonResponse({"success": True, "message": "ready", "data": {"status": "ready", "checks": checks}})
