"""The live sale page: the sale's snapshot rendered on the server, then kept live over the WebSocket."""

from datetime import datetime, timedelta

from django.conf import settings
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from live import realtime
from sales import selectors
from sales.models import FlashSale, SaleStatus

RECENT_PURCHASES = 10  # as many as live.js keeps
OTHER_SALES = 10  # listed under the sale: the live ones first, then the upcoming ones
# A pending sale's badge says "Starts soon" only this close to its start (live.js: STARTS_SOON_MS).
STARTS_SOON = timedelta(hours=1)


def status_label(sale: FlashSale, status: str, moment: datetime | None = None) -> str:
    """The badge's words, the same as live.js writes once it takes over."""
    if status == SaleStatus.PENDING:
        moment = moment or timezone.now()
        return "Starts soon" if sale.start_time - moment <= STARTS_SOON else "Upcoming"
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
        sale = selectors.find_sale(sale_id)
        if sale is None:
            raise Http404("No flash sale with this id.")
    else:
        sale = selectors.featured_sale(now)
    status = sale.status_at(now) if sale else None
    purchases = selectors.recent_purchases(sale=sale, limit=RECENT_PURCHASES, confirmed_only=True) if sale else []
    others = [other for other in selectors.coming_sales(now, limit=OTHER_SALES + 1) if other != sale][:OTHER_SALES]
    return render(
        request,
        "sales/live.html",
        {
            "sale": sale,
            "status": status,
            "status_label": status_label(sale, status, now) if sale and status else "No sale",
            # Live and upcoming sales besides this one, each linked; the first is "next" once this one is over.
            "others": [
                {"sale": other, "status": other.status_at(now), "label": status_label(other, other.status_at(now), now)}
                for other in others
            ],
            "snapshot": realtime.snapshot_message(sale, now),
            "purchases": purchases,
            "socket_path": f"/ws/sales/{sale_id}/" if sale_id is not None else "/ws/sales/active/",
            # Set when sockets are served on another port than pages (./scripts/serve).
            "socket_port": settings.WEBSOCKET_PORT or "",
            "others_live": sum(other.is_live_at(now) for other in others),
            "max_quantity": settings.MAX_PURCHASE_QUANTITY,
            "max_units": settings.MAX_UNITS_PER_USER,
            "waiting_room": waiting_room_settings(sale),
        },
    )


def waiting_room_settings(sale: FlashSale | None) -> dict[str, str]:
    """The waiting room of the page's sale for live.js (the #app element's data-* attributes): whether
    it has one, when its line opens, how fast it admits and how far it got when the page was rendered.
    Empty for a sale without one, so the page behaves as before."""
    if sale is None or not sale.waiting_room:
        return {}
    return {
        "waiting-room": "true",
        "queue-opens-at": realtime.iso(sale.queue_opening),
        "admit-per-second": str(sale.admit_per_second),
        "admitted-through": str(sale.admitted_through),
        "admission-paused": "true" if sale.admission_paused else "false",
        "join-difficulty": str(sale.join_difficulty),
    }


def preview_sale(request, sale: FlashSale, *, change_url: str):
    """A pending sale's page as buyers will see it when it starts, for staff before launch.

    Rendered as at the start time (live, stock in full) and left still: no live.js, so no socket, no
    sign-in and no buy button; nothing on it can buy or change anything. The admin serves it to staff
    only (sales.admin), and it is never cached.
    """
    at_start = sale.start_time
    status = sale.status_at(at_start)
    return render(
        request,
        "sales/live.html",
        {
            "sale": sale,
            "status": status,
            "status_label": status_label(sale, status),
            "snapshot": realtime.snapshot_message(sale, at_start),
            "purchases": [],
            "preview": True,
            "change_url": change_url,
            "max_quantity": settings.MAX_PURCHASE_QUANTITY,
            "waiting_room": waiting_room_settings(sale),
        },
    )
