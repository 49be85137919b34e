"""WebSocket URL routes (mounted by flashsale.asgi)."""

from django.urls import path, re_path

from live.consumers import ActiveSaleConsumer, MalformedPathConsumer, SaleConsumer

websocket_urlpatterns = [
    path("ws/sales/active/", ActiveSaleConsumer.as_asgi()),
    # Anything in the id segment reaches the consumer, which closes non-ids with 4400.
    re_path(r"^ws/sales/(?P<sale_id>[^/]+)/$", SaleConsumer.as_asgi()),
    # Every other path: close with 4400 instead of failing the handshake with no reason.
    re_path(r"", MalformedPathConsumer.as_asgi()),
]
