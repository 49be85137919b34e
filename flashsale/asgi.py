"""ASGI entry point: Daphne serves HTTP (Django) and WebSocket (Channels) on one port."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings")

# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from core import patches  # noqa: E402
from core.metrics import count_open_websockets, forget_this_process_at_exit  # noqa: E402
from core.websocket_origin import browser_origin_validator  # noqa: E402
from live.routing import websocket_urlpatterns  # noqa: E402

# What Daphne, Twisted and autobahn do not let us configure (core/patches.py says what each relies on).
patches.complete_twisted_reason_phrases()
patches.bound_daphnes_wait_for_headers(settings.DAPHNE_IDLE_TIMEOUT)
patches.plain_autobahn_log_arguments()
forget_this_process_at_exit()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Sockets are anonymous and read-only, but a page on another origin still may not open them.
        # (The ignore: types-channels' URLRouter takes only its own pattern type, which no path() returns.)
        "websocket": count_open_websockets(browser_origin_validator(URLRouter(websocket_urlpatterns))),  # type: ignore[arg-type]
    }
)
