import logging
import time

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import DisallowedHost
from django.db import DatabaseError
from django.utils.deprecation import MiddlewareMixin
from django.utils.functional import SimpleLazyObject, empty

from core.error_codes import ErrorCode
from core.errors import json_error, json_error_for
from core.ratelimit import RateLimited, check_rate

request_logger = logging.getLogger("flashsale.request")
# The logger Django reports a refused Host to, kept so alerts on it still fire.
disallowed_host_logger = logging.getLogger("django.security.DisallowedHost")

# Probes from load balancers and orchestrators must never be throttled. Matched exactly: a prefix
# match also let `/api/v1/healthXYZ...` (a 404) through unthrottled.
_UNLIMITED_PATHS = frozenset({"/api/v1/health", "/api/v1/health/ready", "/api/v1/health/ready/"})
# Files WhiteNoise serves never reach this middleware; anything else under here is a 404.
_STATIC_PREFIX = "/static/"
# The OpenAPI schema and Swagger UI: generating the schema costs far more than an API read, and
# nobody needs it many times a minute, so it has its own, tighter limit (RATELIMIT_SCHEMA).
_SCHEMA_PREFIXES = ("/api/schema", "/api/docs")


class RequestLogMiddleware:
    """One structured line per request: method, path, status, duration, user id."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        if settings.REQUEST_LOG:
            request_logger.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "user_id": _resolved_user_id(request),
                },
            )
        return response


def _resolved_user_id(request) -> int | None:
    """The user id if the request already resolved its user; logging never looks one up itself.

    Evaluating Django's lazy `request.user` here would load the session from the database after
    the view answered: a query the request never needed, and with the database down a 500
    instead of the view's 503.
    """
    user = getattr(request, "user", None)
    if user is None or (isinstance(user, SimpleLazyObject) and user._wrapped is empty):
        return None
    try:
        return user.pk if user.is_authenticated else None
    except DatabaseError:
        return None


class ApiHostMiddleware:
    """A Host outside ALLOWED_HOSTS is refused under /api/ in the API's error shape.

    Django raises DisallowedHost from the first `request.get_host()` (CommonMiddleware asks every
    request) and answers with an HTML page, the debug page in DEBUG. Checking first, for /api/ only,
    gives API clients JSON in both modes; pages keep Django's answer.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            try:
                request.get_host()
            except DisallowedHost as refused:
                disallowed_host_logger.error(str(refused))
                # The Host is not echoed: it is the client's text, and the fix is on the client's side.
                return json_error(ErrorCode.BAD_REQUEST, "The Host header names a host this server does not serve.")
        return self.get_response(request)


class GlobalRateLimitMiddleware:
    """A per-client-IP ceiling on every API request and every HTML page, before any view work."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path
        if path in _UNLIMITED_PATHS or path.startswith(_STATIC_PREFIX):
            return self.get_response(request)
        if path.startswith(_SCHEMA_PREFIXES):
            group, rate_setting = "schema", "RATELIMIT_SCHEMA"
        elif path.startswith("/api/"):
            group, rate_setting = "global", "RATELIMIT_GLOBAL"
        else:
            group, rate_setting = "pages", "RATELIMIT_PAGES"
        try:
            check_rate(request, group=group, key="ip", rate_setting=rate_setting)
        except RateLimited as limited:
            return json_error_for(limited)
        return self.get_response(request)


class _PagesOnly(MiddlewareMixin):
    """Mixed into a Django middleware: run it for HTML pages (admin, the live page), skip it under /api/.

    The API is token-authenticated JSON: it reads no session and shows no messages, so a purchase
    should not pay for either on the hot path.
    Subclassing keeps the admin's checks (admin.E408-E410) and `isinstance` tests true.
    """

    # Sync only, like the rest of this stack's middleware: HTTP is served by a WSGI server.
    sync_capable = True
    async_capable = False

    def __call__(self, request):
        if request.path_info.startswith("/api/"):
            return self.get_response(request)
        return super().__call__(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        process_view = getattr(super(), "process_view", None)
        if process_view is None or request.path_info.startswith("/api/"):
            return None
        return process_view(request, view_func, view_args, view_kwargs)


class PageSessionMiddleware(_PagesOnly, SessionMiddleware):
    pass


class PageAuthenticationMiddleware(_PagesOnly, AuthenticationMiddleware):
    pass


class PageMessageMiddleware(_PagesOnly, MessageMiddleware):
    pass
