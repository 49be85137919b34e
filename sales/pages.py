"""The live sale page: server-rendered HTML shell; live data arrives over the WebSocket."""

from django.conf import settings
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_safe

from sales.models import FlashSale


@require_safe
def live_sale(request, sale_id: int | None = None):
    """`/` follows whichever sale is live (ws/sales/active/); `/sales/<id>/` watches one sale."""
    sale = None
    if sale_id is not None:
        sale = FlashSale.objects.filter(pk=sale_id).first()
        if sale is None:
            raise Http404("No flash sale with this id.")
    return render(
        request,
        "sales/live.html",
        {
            "sale": sale,
            "socket_path": f"/ws/sales/{sale.pk}/" if sale else "/ws/sales/active/",
            # Set when sockets are served on another port than pages (./scripts/serve).
            "socket_port": settings.WEBSOCKET_PORT or "",
            "max_quantity": settings.MAX_PURCHASE_QUANTITY,
        },
    )
