"""ASGI entry point: Daphne serves HTTP (Django) and WebSocket (Channels) on one port."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings")

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from flashsale.websocket_origin import browser_origin_validator  # noqa: E402
from sales.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Sockets are anonymous and read-only, but a page on another origin still may not open them.
        "websocket": browser_origin_validator(URLRouter(websocket_urlpatterns)),
    }
)
