import functools
import logging
import time

from corsheaders.middleware import CorsMiddleware
from csp.constants import HEADER as CSP_HEADER
from csp.constants import HEADER_REPORT_ONLY as CSP_HEADER_REPORT_ONLY
from csp.middleware import CSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.core.signals import setting_changed
from django.db import DatabaseError
from django.dispatch import receiver
from django.http import HttpResponseBase, UnreadablePostError
from django.utils.cache import patch_vary_headers
from django.utils.deprecation import MiddlewareMixin
from django.utils.functional import SimpleLazyObject, empty
from whitenoise.middleware import WhiteNoiseMiddleware

from core import prefetch
from core.error_codes import ErrorCode
from core.errors import body_not_received, error_code_of, json_error, json_error_for
from core.ratelimit import RateLimited, check_rate, planned_counter

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
    """One structured line per request: method, path, status, error code (when the answer is a
    registered error), duration, user id."""

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
                    "code": _error_code(response),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "user_id": _resolved_user_id(request),
                },
            )
        return response


def _error_code(response) -> str | None:
    code = error_code_of(response)
    return code.value if code is not None else None


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


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


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
        # The apps' planners read the body; a body that stops arriving is answered here, where it is
        # first read (its stream is spent after a failed read: no layer below could answer it).
        if request.method in _BODY_METHODS and group != "pages":
            try:
                request.body  # noqa: B018 (kept by Django for every later reader)
            except UnreadablePostError as unread:
                return body_not_received(unread)
            except RequestDataTooBig:
                pass  # refused before reading: DRF's parser answers 413
        # This limit's counter, and whatever the apps' planners say the request will read or count
        # later (its token, the sale gate, the purchase limit), in one cache round trip.
        plan = prefetch.Plan()
        counter = planned_counter(request, group=group, key="ip", rate_setting=rate_setting)
        if counter is not None:
            plan.counters.append(counter)
        with prefetch.fetched_for(request, plan):
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


# --- Only what an API request uses (issue 20.3; docs/performance.md "Middleware an API request uses") ---
#
# Under /api/ the stack keeps what an API answer needs (security headers, CSRF and X-Frame-Options by
# their stock names, which check --deploy looks for) and drops work that only pages or browsers
# across origins need. Each class below answers exactly as its parent does outside /api/.

_API_PREFIX = "/api/"


class ApiAwareCSPMiddleware(CSPMiddleware):
    """django-csp's middleware; an /api/ answer gets the configured policy, built once per process.

    django-csp builds the header for every response, to merge a view's `@csp_update` and a page's
    nonce in: the costliest middleware on an API request in the profile. No API view has either, so
    under /api/ the header is the same string every time (a response that does carry a policy of its
    own still goes through django-csp).
    """

    def process_request(self, request):
        if request.path_info.startswith(_API_PREFIX):
            return None  # no nonce: API answers hold no inline script
        return super().process_request(request)

    def process_response(self, request, response):
        if not request.path_info.startswith(_API_PREFIX) or _has_own_policy(response):
            return super().process_response(request, response)
        if response.status_code in (404, 500) and settings.DEBUG:
            return response  # django-csp leaves Django's debug pages alone
        for header, policy, excluded_prefixes in configured_policies():
            if header not in response and not request.path_info.startswith(excluded_prefixes):
                response[header] = policy
        return response


def _has_own_policy(response) -> bool:
    return any(
        hasattr(response, name)
        for name in ("_csp_config", "_csp_update", "_csp_replace", "_csp_exempt", "_csp_config_ro")
        + ("_csp_update_ro", "_csp_replace_ro", "_csp_exempt_ro")
    )


@functools.cache
def configured_policies() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """(header, policy, excluded path prefixes) for the enforced and the report-only policy, as
    django-csp builds them for a response without a policy of its own."""
    found = []
    for header, setting, report_only in (
        (CSP_HEADER, "CONTENT_SECURITY_POLICY", False),
        (CSP_HEADER_REPORT_ONLY, "CONTENT_SECURITY_POLICY_REPORT_ONLY", True),
    ):
        policy = build_policy(report_only=report_only)
        if policy:
            prefixes = tuple((getattr(settings, setting, None) or {}).get("EXCLUDE_URL_PREFIXES") or ())
            found.append((header, policy, prefixes))
    return tuple(found)


@receiver(setting_changed, dispatch_uid="core.middleware.csp_policy_changed")
def _csp_setting_changed(*, setting: str, **kwargs) -> None:
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        configured_policies.cache_clear()


class PageWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise serves files under STATIC_URL; an /api/ request skips its lookup (and, in DEBUG,
    its search of the apps' folders)."""

    def __call__(self, request):
        if request.path_info.startswith(_API_PREFIX):
            return self.get_response(request)
        return super().__call__(request)


class CrossOriginCorsMiddleware(CorsMiddleware):
    """django-cors-headers, for requests that carry an `Origin`.

    Browsers send `Origin` with every cross-origin request and every preflight, so a request without
    one (a server, a mobile client, a same-origin GET) can get no CORS header: it only needs the
    `Vary: origin` that tells caches the answer depends on that header.
    """

    def __call__(self, request):
        if "HTTP_ORIGIN" in request.META or self.async_mode:
            return super().__call__(request)
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)  # sync: async_mode went to the parent above
        if self.is_enabled(request):
            patch_vary_headers(response, ("origin",))
        return response
