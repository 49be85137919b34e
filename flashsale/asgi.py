"""ASGI entry point: Daphne serves HTTP (Django) and WebSocket (Channels) on one port."""

import os
from http import HTTPStatus

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings")

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from flashsale.metrics import count_open_websockets, forget_this_process_at_exit  # noqa: E402
from flashsale.websocket_origin import browser_origin_validator  # noqa: E402
from sales.routing import websocket_urlpatterns  # noqa: E402


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


_complete_twisted_reason_phrases()
forget_this_process_at_exit()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Sockets are anonymous and read-only, but a page on another origin still may not open them.
        "websocket": count_open_websockets(browser_origin_validator(URLRouter(websocket_urlpatterns))),
    }
)
