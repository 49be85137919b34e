"""Rate limiting on top of django-ratelimit, raising RateLimited, which knows its Retry-After."""

import ipaddress
from functools import wraps

from django.conf import settings
from django_ratelimit.core import get_usage

from core.errors import RateLimited


def _is_address(value: str) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    # A zone ("fe80::1%eth0") names a local interface, never a remote client; each zone would be
    # counted apart.
    return getattr(address, "scope_id", None) is None


def client_ip(request) -> str:
    """The client address: the trusted proxy header when one is configured and holds an address,
    else the socket peer."""
    header = settings.TRUSTED_CLIENT_IP_HEADER
    if header:
        forwarded = request.META.get(header, "")
        # X-Forwarded-For lists client, proxy1, proxy2...; our own proxy appends the last hop,
        # so the right-most entry is the one it saw (entries on the left are client-supplied).
        candidate = forwarded.split(",")[-1].strip()
        # django-ratelimit parses the value as an address: anything else ("zzz", a header the
        # proxy let through unchanged) was a 500. Counting it under the peer keeps it limited.
        if _is_address(candidate):
            return candidate
    return request.META.get("REMOTE_ADDR") or "0.0.0.0"


def check_rate(request, *, group: str, key, rate_setting: str) -> None:
    """Count this request against `group` and raise RateLimited when over the configured rate.

    `rate_setting` names a setting, read per request so tests and operators can change it.
    """
    usage = get_usage(request, group=group, key=key, rate=getattr(settings, rate_setting), increment=True)
    if usage is not None and usage["should_limit"]:
        raise RateLimited(retry_after=usage["time_left"])


def rate_limit(*, group: str, key, rate_setting: str):
    """Decorate a view or APIView handler method (self, request, ...) with `check_rate`."""

    def decorator(handler):
        @wraps(handler)
        def wrapped(view, request, *args, **kwargs):
            check_rate(request, group=group, key=key, rate_setting=rate_setting)
            return handler(view, request, *args, **kwargs)

        return wrapped

    return decorator
