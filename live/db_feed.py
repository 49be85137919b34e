"""Live pushes read from the database, for a WebSocket process that no channel layer reaches.

`./scripts/serve` without REDIS_URL runs gunicorn (pages, API, purchases) and Daphne (sockets) as
separate processes. The in-memory channel layer lives inside one process, so a purchase committed
in a gunicorn worker would never reach the sockets. With REALTIME_POLL_MS set, the hub of each
Daphne process runs this feed instead: every interval it reads the sales its sockets watch and
turns what changed since the last read into the same `sale.event` / `sales.featured` messages
live/events.py sends after a commit, and hands them to the hub through the process's own
in-memory layer. Nothing else changes for the hub: it coalesces and version-guards as always.

Why the database and not a layer both processes reach: it is the one thing both already share,
it needs no extra server (redis-server may not exist on a newcomer's machine), it loses nothing
while the socket side restarts (the next read sees the current state), and it is also the sale
clock in this mode: a sale's status is recomputed at every read, so starts and ends are pushed
without `runsaleclock`. The cost is a few indexed reads per interval per Daphne process while
sockets are open, and pushes up to one interval late.
"""

import asyncio
import logging
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from live import realtime
from live.hub import PURCHASE_BURST
from sales import selectors
from sales.models import FlashSale, Purchase

logger = logging.getLogger("flashsale.realtime")


@dataclass
class _Seen:
    stock_version: int | None  # None: not read yet
    status: str | None
    window: tuple  # what a snapshot shows besides the stock: an edit changes it
    last_purchase_id: int


class DatabaseFeed:
    """Reads what changed for the sales `hub` watches and sends it to the hub's channel."""

    def __init__(self, hub):
        self.hub = hub
        self.seen: dict[int, _Seen] = {}
        self.featured_id: int | None | bool = False  # False: not announced yet

    async def run(self) -> None:
        interval = settings.REALTIME_POLL_MS / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                watched = {sale_id: feed.since for sale_id, feed in self.hub.feeds.items()}
                messages = await self._changes(watched, bool(self.hub.followers))
                for group, kind, message in messages:
                    await self.hub.layer.group_send(group, {"type": kind, "message": message})
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database may be briefly unavailable; the next read catches up with the state.
                logger.exception("the real-time database feed failed to read; retrying")

    @database_sync_to_async
    def _changes(self, watched: dict, follow_featured: bool) -> list[tuple[str, str, dict]]:
        """Messages for what changed since the last read; `watched` maps sale ids to the moment
        this process started watching them."""
        now = timezone.now()
        messages = []
        sales = {sale.pk: sale for sale in FlashSale.objects.filter(pk__in=watched)}
        self.seen = {sale_id: seen for sale_id, seen in self.seen.items() if sale_id in sales}
        for sale_id, sale in sales.items():
            group = realtime.sale_group(sale_id)
            before = self.seen.get(sale_id)
            status = sale.status_at(now)
            window = (
                sale.name,
                sale.start_time,
                sale.end_time,
                sale.original_stock,
                sale.paused,
                sale.max_per_buyer,
                sale.max_per_purchase,
            )
            if before is None:
                # The first socket of this sale read its snapshot after the hub started watching and
                # maybe before this first read: the stock, the status and the purchases since then
                # are reported now (the hub drops a stock that is not newer than the snapshot).
                older = Purchase.objects.filter(sale_id=sale_id, created_at__lt=watched[sale_id])
                last_id = older.aggregate(last=Max("id"))["last"] or 0
                before = self.seen[sale_id] = _Seen(None, None, window, last_id)
            purchases = list(
                # Held purchases are not on the leaderboard (yet): only confirmed ones are announced.
                Purchase.objects.filter(sale_id=sale_id, id__gt=before.last_purchase_id, status="confirmed")
                .select_related("user")
                .order_by("-id")[:PURCHASE_BURST]
            )
            # Oldest first, as they were committed; the hub keeps the newest few of a burst anyway.
            for purchase in reversed(purchases):
                message = realtime.purchase_message(
                    sale_id=sale_id,
                    user_name=purchase.user.name,
                    quantity=purchase.quantity,
                    timestamp=purchase.created_at,
                )
                messages.append((group, realtime.SALE_EVENT, {"purchase": message}))
            if purchases:
                before.last_purchase_id = purchases[0].pk
            if sale.stock_version != before.stock_version or window != before.window:
                if window != before.window:
                    messages.append((group, realtime.SALE_EVENT, {"snapshot": realtime.snapshot_message(sale, now)}))
                else:
                    messages.append((group, realtime.SALE_EVENT, {"stock": self._stock(sale)}))
            if status != before.status:
                messages.append(
                    (group, realtime.SALE_EVENT, {"status": realtime.status_message(sale_id=sale_id, status=status)})
                )
            before.stock_version, before.status, before.window = sale.stock_version, status, window
        if follow_featured:
            featured = selectors.featured_sale(now)
            featured_id = featured.pk if featured else None
            if featured_id != self.featured_id:
                # The first announcement covers a switch between a follower's own read and this one;
                # the hub ignores it for followers already on that sale.
                snapshot = realtime.snapshot_message(featured, now)
                messages.append((realtime.LIFECYCLE_GROUP, realtime.FEATURED, {"snapshot": snapshot}))
                self.featured_id = featured_id
        else:
            self.featured_id = False
        return messages

    @staticmethod
    def _stock(sale: FlashSale) -> dict:
        return realtime.stock_message(
            sale_id=sale.pk, current_stock=sale.current_stock, stock_version=sale.stock_version
        )
