"""WebSocket consumers: read-only live views of a sale. Nothing a client sends can change state.

The pushes themselves come from this process's hub (sales/hub.py): a socket is not a member of
any channel-layer group; it registers with the hub, which receives each message once per process
and writes it to its sockets, coalesced per sale and version-guarded per socket. These consumers
only parse the path, read the snapshot, answer pings and tell the hub when they come and go.
"""

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from sales import realtime
from sales.hub import Watcher, hub
from sales.models import FlashSale

CLOSE_MALFORMED = 4400
CLOSE_NOT_FOUND = 4404
MAX_SALE_ID = 2**63 - 1


@database_sync_to_async
def _read_sale(sale_id: int) -> FlashSale | None:
    return FlashSale.objects.filter(pk=sale_id).first()


@database_sync_to_async
def _read_featured() -> FlashSale | None:
    return realtime.featured_sale()


class _LiveSaleConsumer(AsyncWebsocketConsumer):
    """Shared machinery: registration with the hub, pings, close codes."""

    # No channel of its own: the hub is the process's only channel-layer member, so a socket
    # costs no channel-layer traffic (and no receive to cancel) per message.
    channel_layer_alias = None

    async def websocket_connect(self, message):
        self.watcher = Watcher(send=self._send_text, close=self._close_text)
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

    async def disconnect(self, code):
        await hub().leave(self.watcher)

    async def _send(self, message: dict) -> None:
        await self._send_text(json.dumps(message, separators=(",", ":")))

    async def _send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def _close_text(self, code: int) -> None:
        await self.close(code=code)

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
        # Join before reading: anything committed after the read reaches the hub and waits in this
        # socket's outbox until the snapshot is out; anything older is dropped by the version guard.
        await hub().watch(self.watcher, sale_id)
        sale = await _read_sale(sale_id)
        if sale is None:
            await hub().leave(self.watcher)
            await self._close_with(CLOSE_NOT_FOUND)
            return
        await self.accept()
        await hub().go_live(self.watcher, realtime.snapshot_message(sale))


class ActiveSaleConsumer(_LiveSaleConsumer):
    """`ws/sales/active/`: follows the home page's sale (see realtime.featured_sale) as it changes."""

    async def connect(self):
        # Follow first, then read: a switch announced meanwhile is applied once the snapshot is out.
        await hub().follow_featured(self.watcher)
        sale = await _read_featured()
        await hub().watch(self.watcher, sale.pk if sale else None)
        await self.accept()
        await hub().go_live(self.watcher, realtime.snapshot_message(sale))


class MalformedPathConsumer(AsyncWebsocketConsumer):
    """Any other WebSocket path: accepted only to be closed with 4400."""

    channel_layer_alias = None  # receives nothing from the layer

    async def connect(self):
        await self.accept()
        await self.close(code=CLOSE_MALFORMED)


def _parse_sale_id(raw: str) -> int | None:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    sale_id = int(raw)
    return sale_id if 1 <= sale_id <= MAX_SALE_ID else None
