"""ASGI entry point: Daphne serves HTTP (Django) and WebSocket (Channels) on one port."""

import os
from http import HTTPStatus

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings")

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from core.metrics import count_open_websockets, forget_this_process_at_exit  # noqa: E402
from core.websocket_origin import browser_origin_validator  # noqa: E402
from live.routing import websocket_urlpatterns  # noqa: E402


def _complete_twisted_reason_phrases() -> None:
    """Daphne hands Twisted only the status code (ASGI has no reason phrase), and Twisted's table has
    none for 422 or 429: they went out as "HTTP/1.1 429 Unknown Status". Add the standard phrases
    it lacks; the ones it has stay as they are."""
    try:
        from twisted.web.http import RESPONSES
    except ImportError:  # served by something other than Daphne
        return
    for status in HTTPStatus:
        RESPONSES.setdefault(status.value, status.phrase.encode("ascii"))


def _bound_daphnes_wait_for_headers() -> None:
    """Slow headers: Twisted drops an HTTP connection only after 60 s without a byte, and Daphne
    offers no setting, so a client holding many half-sent requests could take the process to its
    file limit. Daphne builds its HTTP factory when it starts serving, after importing this module:
    give it DAPHNE_IDLE_TIMEOUT. Twisted suspends that timeout once a request's headers are in, and
    an upgraded WebSocket leaves the HTTP channel behind, so open sockets are not affected."""
    from django.conf import settings

    try:
        from daphne import http_protocol, server
    except ImportError:  # served by something other than Daphne
        return
    if not settings.DAPHNE_IDLE_TIMEOUT:
        return

    class HTTPFactory(http_protocol.HTTPFactory):
        def __init__(self, daphne_server):
            super().__init__(daphne_server)
            self.timeOut = settings.DAPHNE_IDLE_TIMEOUT

    server.HTTPFactory = HTTPFactory


def _undecorated(value, *args, **kwargs):
    return value


def _plain_autobahn_log_arguments() -> None:
    """autobahn dresses the arguments of its debug log calls in ANSI colours (`hltype`, `hlval`,
    through click when it is installed) before making the call, debug logging on or off, and
    `sendData` does it on every frame: with 4,000 sockets on one Daphne that was a fifth of the
    process's CPU per WebSocket message of a fan-out (docs/performance.md "WebSocket fan-out").
    Hand the values over as they are: nothing is computed unless a debug line is written, and such
    a line then carries no colour codes into the JSON log."""
    try:
        from autobahn.twisted import websocket as twisted_websocket
        from autobahn.websocket import protocol
    except ImportError:  # served by something other than Daphne
        return
    for module in (protocol, twisted_websocket):
        for name in ("hltype", "hlval"):  # imported names of those modules, not exported ones
            setattr(module, name, _undecorated)


_complete_twisted_reason_phrases()
_bound_daphnes_wait_for_headers()
_plain_autobahn_log_arguments()
forget_this_process_at_exit()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Sockets are anonymous and read-only, but a page on another origin still may not open them.
        # (The ignore: types-channels' URLRouter takes only its own pattern type, which no path() returns.)
        "websocket": count_open_websockets(browser_origin_validator(URLRouter(websocket_urlpatterns))),  # type: ignore[arg-type]
    }
)
