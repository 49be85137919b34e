"""Rate limiting on top of django-ratelimit, raising RateLimited, which knows its Retry-After.

`planned_counter` computes the key django-ratelimit 4.1 counts a limit under, with its private
helpers (`_split_rate`, `_get_window`, `_make_cache_key`, `_SIMPLE_KEYS`), so that flashsale.prefetch
can count it in the request's one cache round trip and `check_rate` then use that count instead of
counting again. tests/test_prefetch.py fails if a counter counted that way and one counted by
django-ratelimit stop being the same counter.
"""

import ipaddress
import time
from functools import wraps

from django.conf import settings
from django_ratelimit.core import _SIMPLE_KEYS, ALL, _get_window, _make_cache_key, _split_rate, get_usage

from flashsale import prefetch
from flashsale.errors import RateLimited


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
    usage = _counted_already(request, group=group, key=key, rate_setting=rate_setting)
    if usage is None:
        usage = get_usage(request, group=group, key=key, rate=getattr(settings, rate_setting), increment=True)
    if usage is not None and usage["should_limit"]:
        raise RateLimited(retry_after=usage["time_left"])


def planned_counter(
    request, *, group: str, key: str, rate_setting: str, value: str | None = None, only_if: str | None = None
) -> prefetch.Counter | None:
    """The counter `check_rate(request, group=..., key=..., rate_setting=...)` would count, for
    flashsale.prefetch; `value` when the request cannot say it yet (a user id before authentication).
    None while rate limiting is off."""
    if not settings.RATELIMIT_ENABLE:
        return None
    rate = getattr(settings, rate_setting)
    limit, period = _split_rate(rate)
    if value is None:
        value = _SIMPLE_KEYS[key](request)
    window = _get_window(value, period)
    return prefetch.Counter(
        group=group,
        cache_key=_make_cache_key(group, window, rate, value, ALL),
        value=value,
        limit=limit,
        period=period,
        window=window,
        only_if=only_if,
    )


def _counted_already(request, *, group: str, key, rate_setting: str) -> dict | None:
    """django-ratelimit's usage for a counter this request's one round trip already counted, if it did."""
    if not settings.RATELIMIT_ENABLE or not prefetch.has_counts():
        return None
    if not isinstance(key, str) or key not in _SIMPLE_KEYS:
        return None  # a callable or accessor key (a WebSocket's connect rate) is never planned
    if key == "user" and not getattr(getattr(request, "user", None), "is_authenticated", False):
        return None  # django-ratelimit would key it by something else; let it
    value = _SIMPLE_KEYS[key](request)
    count = prefetch.counted(group, value)
    if count is None:
        return None
    limit, period = _split_rate(getattr(settings, rate_setting))
    window = _get_window(value, period)
    return {"count": count, "limit": limit, "should_limit": count > limit, "time_left": window - int(time.time())}


def rate_limit(*, group: str, key, rate_setting: str):
    """Decorate a view or APIView handler method (self, request, ...) with `check_rate`."""

    def decorator(handler):
        @wraps(handler)
        def wrapped(view, request, *args, **kwargs):
            check_rate(request, group=group, key=key, rate_setting=rate_setting)
            return handler(view, request, *args, **kwargs)

        return wrapped

    return decorator
