"""WebSocket consumers: read-only live views of a sale. Nothing a client sends can change state.

The pushes themselves come from this process's hub (live/hub.py): a socket is not a member of
any channel-layer group; it registers with the hub, which receives each message once per process
and writes it to its sockets, coalesced per sale and version-guarded per socket. These consumers
only parse the path, read the snapshot, answer pings and tell the hub when they come and go.
"""

import asyncio
import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.cache import cache

from core.ids import MAX_ID
from core.ratelimit import RateLimited, check_rate
from live import realtime
from live.hub import Watcher, hub
from live.socket_limits import (
    MessageBudget,
    address_slots,
    client_address,
    guard_incoming,
    send_protocol_close,
    watch_unread,
)
from sales import selectors
from sales.models import FlashSale

CLOSE_POLICY = 1008  # too many sockets, too many or too large messages, or too much left unread
CLOSE_MALFORMED = 4400
CLOSE_NOT_FOUND = 4404


def _unknown_sale_key(sale_id: int) -> str:
    return f"ws:unknown-sale:{sale_id}"


@database_sync_to_async
def _read_sale(sale_id: int) -> FlashSale | None:
    """The sale, or None; an id found missing is answered from the cache for a few seconds, so
    connect/close cycles on unknown ids cost one database read per id and window, not one each."""
    if cache.get(_unknown_sale_key(sale_id)):
        return None
    sale = selectors.find_sale(sale_id)
    if sale is None:
        cache.set(_unknown_sale_key(sale_id), True, settings.WS_UNKNOWN_SALE_CACHE_SECONDS)
    return sale


@database_sync_to_async
def _within_connect_rate(address: str | None) -> bool:
    if address is None:
        return True
    try:
        check_rate(None, group="ws-connect", key=lambda group, request: address, rate_setting="RATELIMIT_WS_CONNECT")
    except RateLimited:
        return False
    return True


@database_sync_to_async
def _read_featured() -> FlashSale | None:
    return selectors.featured_sale()


class _LiveSaleConsumer(AsyncWebsocketConsumer):
    """Shared machinery: registration with the hub, pings, close codes."""

    # No channel of its own: the hub is the process's only channel-layer member, so a socket
    # costs no channel-layer traffic (and no receive to cancel) per message. Channels reads an alias
    # it has no layer for as "no layer"; types-channels only allows names.
    channel_layer_alias = None  # type: ignore[assignment]

    async def websocket_connect(self, message):
        self.watcher = Watcher(send=self._send_text, close=self._close_text)
        self.budget = MessageBudget()
        self.address = client_address(self.scope)
        self.holds_slot = False
        # Counted before any other work, so a client at its cap costs no query and no cache call.
        if not address_slots().take(self.address):
            await self._close_with(CLOSE_POLICY)
            return
        self.holds_slot = True
        if not await _within_connect_rate(self.address):
            await self._close_with(CLOSE_POLICY)
            return
        watch_unread(self.base_send, self._left_unread)
        # Under Daphne the limits are checked as frames are read (see guard_incoming); elsewhere
        # (the test communicator) websocket_receive checks them.
        self.guarded = guard_incoming(self.base_send, self.budget, self._stop_writing)
        await super().websocket_connect(message)

    async def dispatch(self, message):
        # Channels runs close_old_connections before every handler, a hop to the one thread that
        # Django's sync views and database_sync_to_async share: a socket flooding pings kept
        # /api/v1/health on its process waiting behind them (docs/performance.md "Measured reasons
        # behind the code"). Receiving touches no database.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
            return
        await super().dispatch(message)

    # --- incoming: only pings are answered, everything else is ignored ----------------------

    async def websocket_receive(self, message):
        if self.watcher.closed:
            return  # closing: what is still queued is dropped without a look
        if not self.guarded:
            size = len(message.get("text") or message.get("bytes") or "")
            if size > settings.WS_MAX_MESSAGE_BYTES or not self.budget.spend():
                await self._close_abusive()
                return
        await super().websocket_receive(message)

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            return
        if isinstance(content, dict) and content.get("type") == "ping":
            await self._send({"type": "pong"})

    async def disconnect(self, code):
        if self.holds_slot:
            self.holds_slot = False
            address_slots().give_back(self.address)
        await hub().leave(self.watcher)

    async def _close_abusive(self) -> None:
        """Stop writing to the socket and close it with 1008; the hub forgets it at once."""
        if self.watcher.closed:
            return
        await self.watcher.close(CLOSE_POLICY)
        await hub().leave(self.watcher)

    def _stop_writing(self) -> None:
        # Daphne already sent the close; its disconnect, at most a second later, leaves the hub.
        self.watcher.closed = True

    def _left_unread(self) -> None:
        # Called by Twisted from inside a write, so the close runs on the next loop turn.
        if not self.watcher.closed:
            self.watcher.closed = True
            self.closing = asyncio.get_running_loop().create_task(self._close_text(CLOSE_POLICY))

    async def _send(self, message: dict) -> None:
        await self._send_text(json.dumps(message, separators=(",", ":")))

    async def _send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def _close_text(self, code: int) -> None:
        if code == 1000 or 3000 <= code <= 4999 or not send_protocol_close(self.base_send, code):
            await self.close(code=code)

    async def _close_with(self, code: int) -> None:
        # Close codes only reach the client after the handshake: closing before accept() would
        # turn into a bare HTTP 403.
        await self.accept()
        await self._close_text(code)


class SaleConsumer(_LiveSaleConsumer):
    """`ws/sales/<sale_id>/`: a snapshot on connect, then stock, status and purchase pushes."""

    async def connect(self):
        sale_id = _parse_sale_id(self.scope["url_route"]["kwargs"].get("sale_id", ""))
        if sale_id is None:
            await self._close_with(CLOSE_MALFORMED)
            return
        # Join before reading: anything committed after the read reaches the hub and waits in this
        # socket's outbox until the snapshot is out; anything older is dropped by the version guard.
        await hub().watch(self.watcher, sale_id)
        sale = await _read_sale(sale_id)
        if sale is None:
            await hub().leave(self.watcher)
            await self._close_with(CLOSE_NOT_FOUND)
            return
        await self.accept()
        # Read in a thread: a sale with holds counts its held units in the database.
        await hub().go_live(self.watcher, await database_sync_to_async(realtime.snapshot_message)(sale))


class ActiveSaleConsumer(_LiveSaleConsumer):
    """`ws/sales/active/`: follows the home page's sale (see sales.selectors.featured_sale) as it changes."""

    async def connect(self):
        # Follow first, then read: a switch announced meanwhile is applied once the snapshot is out.
        await hub().follow_featured(self.watcher)
        sale = await _read_featured()
        await hub().watch(self.watcher, sale.pk if sale else None)
        await self.accept()
        await hub().go_live(self.watcher, await database_sync_to_async(realtime.snapshot_message)(sale))


class MalformedPathConsumer(AsyncWebsocketConsumer):
    """Any other WebSocket path: accepted only to be closed with 4400."""

    channel_layer_alias = None  # type: ignore[assignment]  # receives nothing from the layer (see above)

    async def connect(self):
        await self.accept()
        await self.close(code=CLOSE_MALFORMED)


def _parse_sale_id(raw: str) -> int | None:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    sale_id = int(raw)
    return sale_id if 1 <= sale_id <= MAX_ID else None
