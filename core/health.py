"""Liveness and readiness probes, for load balancers and orchestrators.

Liveness touches nothing; readiness checks the database and, when configured, Redis, reporting each
with its latency, and answers 503 when one is down. Neither check hangs on a dead dependency: the
database backend fails fast once it knows the server is gone (core.postgresql), the cache has
one-second socket timeouts.
"""

import functools
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import MiddlewareNotUsed
from django.core.handlers.exception import convert_exception_to_response
from django.db import connection
from django.http import HttpResponse
from django.urls import resolve, reverse
from django.utils.module_loading import import_string
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from core.error_codes import ErrorCode
from core.errors import ApiError
from core.responses import allowed_methods, success
from core.schema import PROBES, error_schema, ok


class AnswerInJson(BaseContentNegotiation):
    """A probe gets its JSON answer whatever its Accept header says, never a 406."""

    def select_parser(self, request, parsers):
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class Probe(APIView):
    """GET and HEAD (others are 405), and nothing per request but the answer: no authentication
    (no token or session lookup), permission, throttle or body parsing. The global rate limit
    exempts the probes' exact paths (core.middleware)."""

    http_method_names = ["get", "head"]
    authentication_classes = []
    permission_classes = []
    throttle_classes = []
    parser_classes = []
    renderer_classes = [JSONRenderer]
    content_negotiation_class = AnswerInJson


class LivenessSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok"])


class CheckSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["up", "down", "not_configured"])
    latencyMs = serializers.FloatField(min_value=0, required=False)
    error = serializers.CharField(required=False, help_text="The failure's type, when down.")


class ChecksSerializer(serializers.Serializer):
    database = CheckSerializer()
    redis = CheckSerializer()


class ReadinessSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ready"])
    checks = ChecksSerializer()


class Liveness(Probe):
    @extend_schema(
        operation_id="health_live",
        summary="Liveness",
        description="The process answers. No database, no cache, no auth, never rate limited.",
        tags=[PROBES],
        responses=ok(200, "LivenessResponse", LivenessSerializer),
    )
    def get(self, request):
        return success({"status": "ok"}, "ok")


class Readiness(Probe):
    @extend_schema(
        operation_id="health_ready",
        summary="Readiness",
        description="The database and Redis (when configured) answer; each is reported with its latency. "
        "No auth, never rate limited.",
        tags=[PROBES],
        responses={
            **ok(200, "ReadinessResponse", ReadinessSerializer),
            503: OpenApiResponse(
                response=error_schema([ErrorCode.SERVICE_UNAVAILABLE]),
                description="A dependency is down: `service_unavailable`, with every check in `details.checks`.",
            ),
        },
    )
    def get(self, request):
        checks = {"database": _timed(_check_database)}
        if hasattr(cache, "ping"):
            checks["redis"] = _timed(cache.ping)
        else:
            checks["redis"] = {"status": "not_configured"}
        if any(check["status"] == "down" for check in checks.values()):
            details = {"checks": ChecksSerializer(checks).data}
            raise ApiError(ErrorCode.SERVICE_UNAVAILABLE, "A dependency of the service is unavailable.", details)
        return success(ReadinessSerializer({"status": "ready", "checks": checks}).data, "ready")


class LivenessMiddleware:
    """GET and HEAD of the liveness probe answered before URL resolution and DRF's dispatch, with
    the answer `Liveness` gives (tests compare them byte for byte); `Liveness` stays the contract
    and the schema's source. Load balancers ask it all the time, and it is the trivial endpoint
    bench/herd.py measures the server by.

    It sits right under the Host check, so the metrics and the request log count the probe as
    before, and answers with what the middleware below it would make of its answer: it runs them
    (a chain of its own, ending in the answer, never the view) once per method, scheme and host, and
    replays the result. A request with an `Origin` (CORS answers it per origin) or a `Cookie` (CSRF
    may answer a malformed one with a new cookie) goes through that chain every time.
    """

    MAX_RECORDED = 16

    def __init__(self, get_response):
        self.get_response = get_response
        self._below = _chain_below(type(self), _liveness_answer)
        self._recorded: dict[tuple[str, bool, str], tuple[int, dict[str, str], bytes]] = {}

    def __call__(self, request):
        if request.method not in ("GET", "HEAD") or request.path_info != _liveness_path():
            return self.get_response(request)
        request.route_label = _liveness_route()  # named for core.metrics, as URL resolution would
        meta = request.META
        if "HTTP_ORIGIN" in meta or "HTTP_COOKIE" in meta:
            return self._below(request)
        key = (request.method, request.is_secure(), request.get_host())
        recorded = self._recorded.get(key)
        if recorded is None:
            response = self._below(request)
            if len(self._recorded) < self.MAX_RECORDED and _replayable(response):
                self._recorded[key] = (response.status_code, dict(response.items()), response.content)
            return response
        status, headers, body = recorded
        return HttpResponse(body, status=status, headers=headers)


def _liveness_answer(request) -> HttpResponse:
    response = HttpResponse(_liveness_body(), content_type="application/json")
    response["Allow"] = _liveness_allow()
    return response


def _replayable(response) -> bool:
    # Only a plain answer; a redirect (SECURE_SSL_REDIRECT), a cookie or a streamed body is not replayed.
    return response.status_code == 200 and not response.cookies and not response.streaming


def _chain_below(middleware: type, answer) -> Callable:
    """The middleware after `middleware` in settings.MIDDLEWARE around `answer`, built as Django's
    handler builds its chain (each wrapped to turn an exception into a response; one that is not
    used for this configuration left out)."""
    names = list(settings.MIDDLEWARE)
    below = names[names.index(f"{middleware.__module__}.{middleware.__qualname__}") + 1 :]
    handler = convert_exception_to_response(answer)
    for name in reversed(below):
        try:
            instance = import_string(name)(handler)
        except MiddlewareNotUsed:
            continue
        handler = convert_exception_to_response(instance)
    return handler


@functools.cache
def _liveness_path() -> str:
    return reverse("health")


@functools.cache
def _liveness_route() -> str:
    return resolve(_liveness_path()).route


@functools.cache
def _liveness_body() -> bytes:
    return JSONRenderer().render(Liveness().get(None).data)


@functools.cache
def _liveness_allow() -> str:
    return allowed_methods(_liveness_path())


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
    # (core.postgresql), and waits for a pooled connection like a request would.
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
