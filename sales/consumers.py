"""WebSocket consumers: read-only live views of a sale. Nothing a client sends can change state.

Coalescing (why it lives here): a herd of 1000 purchases is 1000 channel-layer messages, but each
socket gets at most one stock message per STOCK_PUSH_INTERVAL_MS carrying the newest version seen,
plus a short burst of the most recent purchases. The pending value and its flush timer belong to
the connection that will write it, in the process that owns that socket:
- a flush can only be lost together with the socket itself, and a client that reconnects gets a
  fresh snapshot from the database, so the final value always reaches every open page;
- a publisher-side timer (in the web process that handled the purchase) could die with its
  process after others already deferred to it, and timers in several processes would race each
  other with older values. Here each message carries the version read under the row lock and a
  socket never sends a version lower than one it already sent.
"""

import asyncio
import json
import time
from collections import deque

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from sales import realtime
from sales.models import FlashSale

CLOSE_MALFORMED = 4400
CLOSE_NOT_FOUND = 4404
MAX_SALE_ID = 2**63 - 1
# Purchases kept for the next flush; older ones in a burst are dropped (the REST leaderboard has them all).
PURCHASE_BURST = 5


def _interval() -> float:
    return getattr(settings, "STOCK_PUSH_INTERVAL_MS", 75) / 1000


@database_sync_to_async
def _read_sale(sale_id: int) -> FlashSale | None:
    return FlashSale.objects.filter(pk=sale_id).first()


@database_sync_to_async
def _read_featured() -> FlashSale | None:
    return realtime.featured_sale()


class _LiveSaleConsumer(AsyncWebsocketConsumer):
    """Shared machinery: the group of the followed sale, the version guard and the coalescing."""

    sale_id: int | None = None

    async def websocket_connect(self, message):
        self._last_version = 0
        self._pending_stock: dict | None = None
        self._pending_purchases: deque = deque(maxlen=PURCHASE_BURST)
        self._last_flush = 0.0
        self._flush_task: asyncio.Task | None = None
        await super().websocket_connect(message)

    # --- incoming: only pings are answered, everything else is ignored ----------------------

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None or len(text_data) > 1024:
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            return
        if isinstance(content, dict) and content.get("type") == "ping":
            await self._send({"type": "pong"})

    # --- following a sale ---------------------------------------------------------------------

    async def _follow(self, sale_id: int | None) -> None:
        if self.sale_id == sale_id:
            return
        if self.sale_id is not None:
            await self.channel_layer.group_discard(realtime.sale_group(self.sale_id), self.channel_name)
        self.sale_id = sale_id
        self._last_version = 0
        self._pending_stock = None
        self._pending_purchases.clear()
        if sale_id is not None:
            await self.channel_layer.group_add(realtime.sale_group(sale_id), self.channel_name)

    async def _send_snapshot(self, snapshot: dict) -> None:
        version = snapshot.get("version") or 0
        if snapshot.get("saleId") is not None and version < self._last_version:
            return  # older than what this socket already showed
        self._last_version = version
        if self._pending_stock and self._pending_stock["version"] <= version:
            self._pending_stock = None
        await self._send(snapshot)

    async def disconnect(self, code):
        if self._flush_task is not None:
            self._flush_task.cancel()
        if self.sale_id is not None:
            await self.channel_layer.group_discard(realtime.sale_group(self.sale_id), self.channel_name)

    # --- channel-layer handlers ---------------------------------------------------------------

    async def sale_event(self, event):
        message = event["message"]
        about = next(part["saleId"] for part in message.values())
        if about != self.sale_id:
            return  # queued before this socket switched to another sale
        if "snapshot" in message:
            await self._send_snapshot(message["snapshot"])
        if "stock" in message:
            self._offer_stock(message["stock"])
        if "purchase" in message:
            self._pending_purchases.append(message["purchase"])
        if "stock" in message or "purchase" in message:
            await self._schedule_flush()
        if "status" in message:
            # A status must never overtake the stock it results from (sold out after the last 0).
            await self._flush()
            await self._send(message["status"])

    def _offer_stock(self, stock: dict) -> None:
        newest = max(self._last_version, self._pending_stock["version"] if self._pending_stock else 0)
        if stock["version"] <= newest:
            return  # late or duplicate: the socket already has (or will send) something newer
        self._pending_stock = stock

    async def _schedule_flush(self) -> None:
        """Leading edge now, if the socket was quiet for an interval; otherwise one trailing flush."""
        if self._flush_task is not None and not self._flush_task.done():
            return  # a flush is already due and will carry the newest pending value
        delay = self._last_flush + _interval() - time.monotonic()
        if delay <= 0:
            await self._flush()
        else:
            self._flush_task = asyncio.ensure_future(self._flush_after(delay))

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._flush()

    async def _flush(self) -> None:
        purchases, self._pending_purchases = list(self._pending_purchases), deque(maxlen=PURCHASE_BURST)
        stock, self._pending_stock = self._pending_stock, None
        if stock is None and not purchases:
            return
        self._last_flush = time.monotonic()
        for purchase in purchases:
            await self._send(purchase)
        if stock is not None and stock["version"] > self._last_version:
            self._last_version = stock["version"]
            await self._send(stock)

    async def _send(self, message: dict) -> None:
        await self.send(text_data=json.dumps(message, separators=(",", ":")))

    async def _close_with(self, code: int) -> None:
        # Close codes only reach the client after the handshake: closing before accept() would
        # turn into a bare HTTP 403.
        await self.accept()
        await self.close(code=code)


class SaleConsumer(_LiveSaleConsumer):
    """`ws/sales/<sale_id>/`: a snapshot on connect, then stock, status and purchase pushes."""

    async def connect(self):
        sale_id = _parse_sale_id(self.scope["url_route"]["kwargs"].get("sale_id", ""))
        if sale_id is None:
            await self._close_with(CLOSE_MALFORMED)
            return
        # Join before reading: anything committed after the read arrives through the group, and
        # anything before it is dropped by the version guard.
        await self._follow(sale_id)
        sale = await _read_sale(sale_id)
        if sale is None:
            await self._follow(None)
            await self._close_with(CLOSE_NOT_FOUND)
            return
        await self.accept()
        await self._send_snapshot(realtime.snapshot_message(sale))


class ActiveSaleConsumer(_LiveSaleConsumer):
    """`ws/sales/active/`: follows the home page's sale (see realtime.featured_sale) as it changes."""

    async def connect(self):
        await self.channel_layer.group_add(realtime.LIFECYCLE_GROUP, self.channel_name)
        sale = await _read_featured()
        await self._follow(sale.pk if sale else None)
        await self.accept()
        await self._send_snapshot(realtime.snapshot_message(sale))

    async def sales_featured(self, event):
        snapshot = event["message"]["snapshot"]
        if snapshot.get("saleId") == self.sale_id:
            return  # same sale: its own group already carries the news
        await self._follow(snapshot.get("saleId"))
        await self._send_snapshot(snapshot)

    async def disconnect(self, code):
        await self.channel_layer.group_discard(realtime.LIFECYCLE_GROUP, self.channel_name)
        await super().disconnect(code)


class MalformedPathConsumer(AsyncWebsocketConsumer):
    """Any other WebSocket path: accepted only to be closed with 4400."""

    async def connect(self):
        await self.accept()
        await self.close(code=CLOSE_MALFORMED)


def _parse_sale_id(raw: str) -> int | None:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    sale_id = int(raw)
    return sale_id if 1 <= sale_id <= MAX_SALE_ID else None
