"""Rate limiting on top of django-ratelimit, raising RateLimited, which knows its Retry-After.

`planned_counter` computes the key django-ratelimit 4.1 counts a limit under, with its private
helpers (`_split_rate`, `_get_window`, `_make_cache_key`, `_SIMPLE_KEYS`), so that core.prefetch
can count it in the request's one cache round trip and `check_rate` then use that count instead of
counting again. tests/test_prefetch.py fails if a counter counted that way and one counted by
django-ratelimit stop being the same counter.
"""

import functools
import ipaddress
import time
from functools import wraps
from ipaddress import IPv4Network, IPv6Network

from django.conf import settings
from django_ratelimit.core import _SIMPLE_KEYS, ALL, _get_window, _make_cache_key, _split_rate, get_usage

from core import prefetch
from core.errors import RateLimited

IPNetwork = IPv4Network | IPv6Network


def _is_address(value: str) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    # A zone ("fe80::1%eth0") names a local interface, never a remote client; each zone would be
    # counted apart.
    return getattr(address, "scope_id", None) is None


@functools.lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def is_trusted_proxy(address: str | None) -> bool:
    """Whether `address` (a socket peer) is one of settings.TRUSTED_PROXIES."""
    if not address:
        return False
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


def forwarded_client(peer: str | None, forwarded: str) -> str | None:
    """The client named by a forwarding header `forwarded` that `peer` sent, or None to count the peer.

    Believed only from a trusted proxy: from anyone else the header is the client's own text, and a
    client rotating it would get a fresh rate-limit counter per request. X-Forwarded-For lists
    client, proxy1, proxy2...; each trusted proxy appends the address it saw, so the entries are
    read from the right, past our own proxies, to the first one no proxy of ours vouches for
    (entries further left are client-supplied). A value that is not an address counts the peer.
    """
    if not is_trusted_proxy(peer):
        return None
    entries = [entry.strip() for entry in forwarded.split(",")]
    candidate = None
    for entry in reversed(entries):
        # django-ratelimit parses the value as an address: anything else ("zzz", a header the
        # proxy let through unchanged) was a 500. Counting it under the peer keeps it limited.
        if not _is_address(entry):
            return candidate
        candidate = str(ipaddress.ip_address(entry))
        if not is_trusted_proxy(candidate):
            return candidate
    return candidate


def client_ip(request) -> str:
    """The client address: from the trusted proxy header when one is configured, the request came
    from a trusted proxy (TRUSTED_PROXIES) and the header holds an address; else the socket peer."""
    peer = request.META.get("REMOTE_ADDR") or "0.0.0.0"
    header = settings.TRUSTED_CLIENT_IP_HEADER
    if header:
        forwarded = forwarded_client(peer, request.META.get(header, ""))
        if forwarded is not None:
            return forwarded
    return peer


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
    core.prefetch; `value` when the request cannot say it yet (a user id before authentication).
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
