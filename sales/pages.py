"""The live sale page: the sale's snapshot rendered on the server, then kept live over the WebSocket."""

from django.conf import settings
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from live import realtime
from sales import selectors
from sales.models import FlashSale, Purchase, PurchaseStatus, SaleStatus

RECENT_PURCHASES = 10  # as many as live.js keeps


def status_label(sale: FlashSale, status: str) -> str:
    """The badge's words, the same as live.js writes once it takes over."""
    if status == SaleStatus.PENDING:
        return "Starts soon"
    if status == SaleStatus.ACTIVE:
        return "Live"
    return "Sold out" if sale.current_stock <= 0 else "Ended"


@require_safe
def live_sale(request, sale_id: int | None = None):
    """`/` follows whichever sale is live (ws/sales/active/); `/sales/<id>/` watches one sale.

    The page arrives showing the sale as it is now, so its first paint is right and it reads without
    JavaScript; live.js starts from the same snapshot (a JSON block, not an inline script) and the
    socket keeps it current.
    """
    now = timezone.now()
    if sale_id is not None:
        sale = FlashSale.objects.filter(pk=sale_id).first()
        if sale is None:
            raise Http404("No flash sale with this id.")
    else:
        sale = selectors.featured_sale(now)
    status = sale.status_at(now) if sale else None
    purchases = (
        Purchase.objects.filter(sale=sale, status=PurchaseStatus.CONFIRMED)
        .select_related("user")
        .order_by("-created_at", "-id")[:RECENT_PURCHASES]
        if sale
        else []
    )
    return render(
        request,
        "sales/live.html",
        {
            "sale": sale,
            "status": status,
            "status_label": status_label(sale, status) if sale and status else "No sale",
            "snapshot": realtime.snapshot_message(sale, now),
            "purchases": purchases,
            "socket_path": f"/ws/sales/{sale_id}/" if sale_id is not None else "/ws/sales/active/",
            # Set when sockets are served on another port than pages (./scripts/serve).
            "socket_port": settings.WEBSOCKET_PORT or "",
            "max_quantity": settings.MAX_PURCHASE_QUANTITY,
        },
    )
