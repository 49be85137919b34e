"""How many wrong passwords a login may cost, and whose.

Three counters, all in the rate-limit cache (django-ratelimit's fixed windows):

- every login attempt per client address, `RATELIMIT_LOGIN` (the API view's decorator, the admin's
  sign-in wrapper): one address cannot spray guesses over many accounts;
- wrong passwords per (email, client address), `RATELIMIT_LOGIN_FAILURES`, tight: past it that
  address may not try the email again until the window ends, even with the right password;
- wrong passwords per email from any address, `RATELIMIT_LOGIN_EMAIL`, loose: past it, every
  address that has already failed for the email in its window is refused; an address that has not
  still gets its password checked. Someone guessing from many addresses thus gets one guess per
  fresh address per window, while the owner, signing in from an address that has not failed, is
  never locked out by other addresses' failures.

Failures are counted from Django's `user_login_failed` signal, which `authenticate()` sends for
every path that checks a password with a request (the API login, the admin's sign-in).
Addresses are compared as django-ratelimit does: IPv4 whole, IPv6 by /64, since one client
usually holds a whole /64.
"""

import ipaddress

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django_ratelimit.core import get_usage

from accounts.models import normalize_email
from core.ratelimit import RateLimited, client_ip

FAILURES_GROUP = "login-failures"
EMAIL_GROUP = "login-email"


def _client_network(request) -> str:
    raw = client_ip(request)
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:  # a peer that is not an IP address (a Unix socket): counted as it is
        return raw
    prefix = 32 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def _failures(request, *, group: str, value: str, rate_setting: str, increment: bool):
    return get_usage(
        request,
        group=group,
        key=lambda _group, _request: value,
        rate=getattr(settings, rate_setting),
        increment=increment,
    )


def check_login_allowed(request, *, email: str) -> None:
    """Raise RateLimited if this address may not try `email` now (see the module's rules)."""
    email = normalize_email(email)
    pair = _failures(
        request,
        group=FAILURES_GROUP,
        value=f"{email} {_client_network(request)}",
        rate_setting="RATELIMIT_LOGIN_FAILURES",
        increment=False,
    )
    if pair is None:  # limits off, or the cache cannot count (RATELIMIT_FAIL_OPEN)
        return
    if pair["count"] >= pair["limit"]:
        raise RateLimited(retry_after=pair["time_left"])
    if pair["count"] == 0:
        return
    anywhere = _failures(request, group=EMAIL_GROUP, value=email, rate_setting="RATELIMIT_LOGIN_EMAIL", increment=False)
    if anywhere is not None and anywhere["count"] >= anywhere["limit"]:
        raise RateLimited(retry_after=anywhere["time_left"])


def record_login_failure(request, *, email: str) -> None:
    email = normalize_email(email)
    _failures(
        request,
        group=FAILURES_GROUP,
        value=f"{email} {_client_network(request)}",
        rate_setting="RATELIMIT_LOGIN_FAILURES",
        increment=True,
    )
    _failures(request, group=EMAIL_GROUP, value=email, rate_setting="RATELIMIT_LOGIN_EMAIL", increment=True)


@receiver(user_login_failed, dispatch_uid="accounts.count_login_failure")
def _login_failed(sender, credentials, request=None, **kwargs):
    # The API passes `email`, the admin's form `username` (our USERNAME_FIELD is the email).
    email = credentials.get("email") or credentials.get("username")
    if request is None or not isinstance(email, str) or not email:
        return
    record_login_failure(request, email=email)
