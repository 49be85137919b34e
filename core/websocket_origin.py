"""The WebSocket Origin check: a browser page may open a socket only from the site's own origin.

An origin is a scheme, a host and a port; all three must match, not the host alone (a page on
http://127.0.0.1:31337 or https://localhost is another site). Allowed:

- the origin the socket itself was opened on: the `Host` header's host and port, with `http`
  for ws:// (and `https` for wss://, or when `HTTPS=true` because a proxy terminates TLS), the
  host being one of `ALLOWED_HOSTS`;
- every origin listed in `WEBSOCKET_ALLOWED_ORIGINS`, for pages served from another port or host
  than the sockets (./scripts/serve with HTTP and WebSockets on different ports, proxies that
  rewrite `Host`).

Clients that send no Origin at all are let in: the sockets are anonymous and read-only, so the
check only keeps other sites' pages from embedding the feed. Browsers always send Origin;
programs (load balancers' checks, the fan-out benchmark, API clients) usually don't, and they may
watch stock like anyone else.
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": "80", "https": "443"}
SOCKET_SCHEMES = {"ws": "http", "wss": "https"}

Origin = tuple[str, str, str]  # scheme, host (IPv6 in brackets, lower case), port


def parse_origin(value: str) -> Origin | None:
    """`scheme://host[:port]` as (scheme, host, port with the default filled in), or None."""
    scheme, sep, rest = value.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS or not rest or "/" in rest or "@" in rest:
        return None
    host, port = split_domain_port(rest)
    if not host or rest.endswith(":") or (port and not port.isdigit()):
        return None
    return scheme, host, str(int(port)) if port else DEFAULT_PORTS[scheme]


def configured_origins() -> set[Origin]:
    origins = set()
    for value in settings.WEBSOCKET_ALLOWED_ORIGINS:
        origin = parse_origin(value)
        if origin is None:
            raise ImproperlyConfigured(f"WEBSOCKET_ALLOWED_ORIGINS: {value!r} is not scheme://host[:port]")
        origins.add(origin)
    return origins


def _allowed_hosts() -> list[str]:
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return ["localhost", "127.0.0.1", "[::1]"]
    return settings.ALLOWED_HOSTS


def _header(scope, name: bytes) -> str | None:
    for header_name, value in scope.get("headers", []):
        if header_name == name:
            return value.decode("latin1")
    return None


def is_own_origin(origin: Origin, scope) -> bool:
    """Whether `origin` is the origin the socket was opened on, for a host the site serves."""
    scheme, host, port = origin
    schemes = {SOCKET_SCHEMES.get(scope.get("scheme", "ws"), "http")}
    if settings.HTTPS:
        schemes.add("https")
    if scheme not in schemes or not validate_host(host, _allowed_hosts()):
        return False
    host_header = _header(scope, b"host")
    if host_header is None:
        # Only in-process test clients omit Host (HTTP/1.1 requires it): the host was checked above.
        return port == DEFAULT_PORTS[scheme]
    socket_host, socket_port = split_domain_port(host_header)
    return (host, port) == (socket_host, socket_port or DEFAULT_PORTS[scheme])


class BrowserOriginValidator:
    """ASGI middleware: deny a socket whose Origin is neither the site's own nor a configured one."""

    def __init__(self, application):
        self.application = application
        configured_origins()  # a malformed setting fails at startup, not at the first socket

    async def __call__(self, scope, receive, send):
        if self.valid(scope):
            return await self.application(scope, receive, send)
        # Refused in plain ASGI (a close before accept: HTTP 403), not with channels'
        # WebsocketDenier: a consumer would open a channel-layer receive for every refused handshake.
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.close"})

    def valid(self, scope) -> bool:
        value = _header(scope, b"origin")
        if value is None:
            return True
        origin = parse_origin(value)
        return origin is not None and (origin in configured_origins() or is_own_origin(origin, scope))


def browser_origin_validator(application):
    return BrowserOriginValidator(application)
