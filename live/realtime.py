"""Everything the real-time layer says, to whom, and through which pipe, in one place.

Group names, message shapes and the single `broadcast` call live here so that swapping the channel
layer (channels_redis core vs pubsub) or the fan-out strategy is a change to this module only.

Groups:
- `sale.<id>`: every message about one sale (stock, status, purchase, snapshot after an edit).
- `sales.lifecycle`: only the rare messages that can change which sale is "the" sale of the home
  page (status changes, edits, new sales). `ws/sales/active/` listens here and re-resolves.
"""

import logging
from datetime import datetime

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone
from rest_framework.fields import DateTimeField

from core import metrics
from live import layer_sender
from sales import selectors
from sales.models import FlashSale

logger = logging.getLogger("flashsale.realtime")

LIFECYCLE_GROUP = "sales.lifecycle"

# Message types the per-process hub (live/hub.py) dispatches on. One committed write is one
# "sale.event" carrying any of the keys snapshot, stock, purchase, status: one channel-layer
# message per commit and per process, however many socket messages it becomes.
SALE_EVENT = "sale.event"
FEATURED = "sales.featured"
# Purchases the hub keeps for its next flush, and the database feed reads per interval; older ones
# in a burst are dropped (the REST leaderboard has them all).
PURCHASE_BURST = 5
# Why a waiting room closed (queue_closed's reason).
QUEUE_ENDED = "ended"
QUEUE_SOLD_OUT = "soldOut"

_timestamp = DateTimeField()


def sale_group(sale_id: int) -> str:
    return f"sale.{sale_id}"


def iso(moment: datetime) -> str:
    """The same ISO 8601 text the REST API uses, so clients parse one format."""
    return _timestamp.to_representation(moment)


# --- message shapes (the WebSocket contract) -----------------------------------------------


def snapshot_message(sale: FlashSale | None, moment: datetime | None = None) -> dict:
    if sale is None:
        # Only on ws/sales/active/ when no sale exists at all: the page waits for one.
        return {"type": "snapshot", "saleId": None, "status": None}
    return {
        "type": "snapshot",
        "saleId": sale.pk,
        "name": sale.name,
        "status": sale.status_at(moment or timezone.now()),
        "startTime": iso(sale.start_time),
        "endTime": iso(sale.end_time),
        "originalStock": sale.original_stock,
        "currentStock": sale.current_stock,
        # Staff edits of the sale's settings; stock pushes are ordered by stockVersion instead.
        "version": sale.version,
        "stockVersion": sale.stock_version,
        "paused": sale.paused,
        "maxPerBuyer": sale.buyer_limit,
        "maxPerPurchase": sale.purchase_limit,
        # Sales without holds never hold a unit: no query for them.
        "heldStock": selectors.held_units(sale.pk) if sale.hold_seconds else 0,
        "waitingRoom": sale.waiting_room,
        # A waiting room's line, as queue_advanced and queue_closed then move it; a sale without one
        # reads nothing more.
        **(_line(sale, moment or timezone.now()) if sale.waiting_room else {}),
    }


def _line(sale: FlashSale, moment: datetime) -> dict:
    return {
        "admittedThrough": sale.admitted_through,
        "admitPerSecond": sale.admit_per_second,
        "queueLength": selectors.queue_length(sale.pk),
        "queueClosed": queue_closing_reason(sale, moment) is not None,
    }


def queue_closing_reason(sale: FlashSale, moment: datetime) -> str | None:
    """Why the sale's waiting room admits no one any more ("ended", "soldOut"), or None while its
    line can still move (or the sale has none). A restock of a sold-out sale opens it again."""
    if not sale.waiting_room:
        return None
    if sale.end_time <= moment:
        return QUEUE_ENDED
    if sale.current_stock <= 0:
        return QUEUE_SOLD_OUT
    return None


def queue_advanced_message(*, sale_id: int, admitted_through: int, admit_per_second: int, queue_length: int) -> dict:
    """A waiting room's line: places up to `admittedThrough` are admitted, `queueLength` places
    were taken; each buyer works out their own place from their position (no message per buyer)."""
    return {
        "type": "queue_advanced",
        "saleId": sale_id,
        "admittedThrough": admitted_through,
        "admitPerSecond": admit_per_second,
        "queueLength": queue_length,
    }


def queue_closed_message(*, sale_id: int, reason: str) -> dict:
    """The waiting room admits no one any more: every waiting buyer is told at once."""
    return {"type": "queue_closed", "saleId": sale_id, "reason": reason}


def held_message(*, sale_id: int, held_stock: int | None = None) -> dict:
    """The units held in the sale now: a part of the stock bar of its own on the live page; counted
    here unless the caller already read them (the database feed reads all its sales at once)."""
    if held_stock is None:
        held_stock = selectors.held_units(sale_id)
    return {"type": "held", "saleId": sale_id, "heldStock": held_stock}


def offer_message(*, sale_id: int, purchase_id: int, user_name: str, expires_at: datetime | None) -> dict:
    """A waitlist offer: the sale clock gave `user_name` the hold `purchase_id`; their page offers to confirm it."""
    return {
        "type": "offer",
        "saleId": sale_id,
        "purchaseId": purchase_id,
        "userName": user_name,
        "expiresAt": iso(expires_at) if expires_at else None,
    }


def stock_message(*, sale_id: int, current_stock: int, stock_version: int) -> dict:
    """The stock as of `stock_version`, which grows with every change of the stock (purchase,
    restock, stock edit): clients keep the highest they have seen."""
    return {"type": "stock", "saleId": sale_id, "currentStock": current_stock, "stockVersion": stock_version}


def status_message(*, sale_id: int, status: str) -> dict:
    return {"type": "status", "saleId": sale_id, "status": str(status)}


def purchase_message(*, sale_id: int, user_name: str, quantity: int, timestamp: datetime) -> dict:
    return {
        "type": "purchase",
        "saleId": sale_id,
        "userName": user_name,
        "quantity": quantity,
        "timestamp": iso(timestamp),
    }


# --- the home page's sale --------------------------------------------------------------------


def announce_featured() -> None:
    """Tell `ws/sales/active/` sockets which sale the home page shows now, with its snapshot.

    Computed once by the writer rather than by every socket, so a sale starting in front of
    thousands of open home pages costs one query, not thousands.
    """
    broadcast(LIFECYCLE_GROUP, FEATURED, {"snapshot": snapshot_message(selectors.featured_sale())})


# --- the one place that sends ----------------------------------------------------------------


def broadcast(group: str, handler: str, message: dict) -> None:
    """Send `message` to every socket in `group` through the channel layer.

    Called after commit from sync code. The write it reports is already committed, so a channel
    layer failure must not turn a successful purchase into an error: it is logged, and clients
    catch up from the snapshot they get when they reconnect. Through Redis the send happens on
    this process's sender thread, after this returns, in the order of the calls.
    """
    if settings.REALTIME_POLL_MS > 0:
        # The WebSocket side reads every change from the database (live/db_feed.py); a send here
        # could only reach this process's own sockets, which would then get each purchase twice.
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        if layer_sender.uses_network(layer):
            # Queued for this process's sender: the request that committed the write does not wait
            # for Redis, hung or not (live/layer_sender.py).
            layer_sender.send_soon(layer, group, {"type": handler, "message": message})
        else:
            async_to_sync(layer.group_send)(group, {"type": handler, "message": message})
    except Exception:
        metrics.CHANNEL_LAYER_SEND_FAILURES.inc()
        logger.exception("broadcast to %s failed", group)
