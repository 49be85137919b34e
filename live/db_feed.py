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
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from live import realtime
from live.queue_news import Line, LineNews
from sales import selectors
from sales.models import FlashSale

logger = logging.getLogger("flashsale.realtime")

# A confirm comes before its hold's expiry on the database's clock, and a hold's purchase is created
# hold_seconds before that expiry on the app's: the search for new confirms goes this much further
# back than that, for clocks that disagree.
CLOCK_SLACK = timedelta(minutes=1)


@dataclass
class _Seen:
    stock_version: int | None  # None: not read yet
    status: str | None
    window: tuple  # what a snapshot shows besides the stock: an edit changes it
    last_purchase_id: int
    # Sales with holds only: the held units last told (None: not yet), the newest confirm and the
    # newest waitlist offer already announced.
    held: int | None = None
    confirmed_at: datetime | None = None
    offered_at: datetime | None = None


class DatabaseFeed:
    """Reads what changed for the sales `hub` watches and sends it to the hub's channel."""

    def __init__(self, hub):
        self.hub = hub
        self.seen: dict[int, _Seen] = {}
        self.featured_id: int | None | bool = False  # False: not announced yet
        # Waiting rooms' lines: each read at most once per QUEUE_PUSH_INTERVAL_MS, told when changed.
        self.lines = LineNews()

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
        messages: list[tuple[str, str, dict]] = []
        ids_announced: dict[int, int] = {}
        lines: set[int] = set()
        clock = time.monotonic()
        sales = selectors.sales_by_id(watched)
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
                last_id = selectors.last_purchase_id_before(sale_id=sale_id, moment=watched[sale_id])
                before = self.seen[sale_id] = _Seen(None, None, window, last_id)
                if sale.hold_seconds:
                    before.confirmed_at = before.offered_at = watched[sale_id]
            ids_announced[sale_id] = before.last_purchase_id
            purchases = selectors.newest_purchases_after(
                sale_id=sale_id, after_id=before.last_purchase_id, limit=realtime.PURCHASE_BURST
            )
            # Oldest first, as they were committed; the hub keeps the newest few of a burst anyway.
            messages.extend(_purchase_messages(group, sale_id, reversed(purchases)))
            if purchases:
                before.last_purchase_id = purchases[0].pk
            if sale.stock_version != before.stock_version or window != before.window:
                if window != before.window:
                    messages.append((group, realtime.SALE_EVENT, {"snapshot": realtime.snapshot_message(sale, now)}))
                else:
                    messages.append((group, realtime.SALE_EVENT, {"stock": self._stock(sale)}))
            closing = realtime.queue_closing_reason(sale, now)
            if status != before.status:
                change = {"status": realtime.status_message(sale_id=sale_id, status=status)}
                if closing is not None:
                    # Sold out or ended: everyone in the waiting room is told with the status.
                    change["queueClosed"] = realtime.queue_closed_message(sale_id=sale_id, reason=closing)
                messages.append((group, realtime.SALE_EVENT, change))
            before.stock_version, before.status, before.window = sale.stock_version, status, window
            if closing is None and sale.waiting_room and sale.queue_opening <= now:
                lines.add(sale_id)
                if self.lines.due(sale_id, clock):
                    line = Line.of(sale)
                    if self.lines.news(line, clock):
                        messages.append((group, realtime.SALE_EVENT, {"queueAdvanced": line.message()}))
        self.lines.keep_only(lines)
        holding = {sale_id: sale for sale_id, sale in sales.items() if sale.hold_seconds}
        if holding:
            # Sales without holds cost nothing here; those with holds two reads, three after a confirm.
            messages.extend(self._hold_changes(holding, ids_announced))
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

    def _hold_changes(self, sales: dict[int, FlashSale], ids_announced: dict[int, int]) -> list[tuple[str, str, dict]]:
        """The held units when they changed, the purchases confirmed since the last read (those
        with an id up to the one the purchase feed had announced before this read: it announces the
        later ones itself once confirmed) and the waitlist offers made since the last read."""
        messages = []
        seen = {sale_id: self.seen[sale_id] for sale_id in sales}
        now = timezone.now()
        for before in seen.values():
            # A sale given holds after this process first read it: from now on.
            before.confirmed_at = before.confirmed_at or now
            before.offered_at = before.offered_at or now
        created_after = {
            sale_id: before.confirmed_at - timedelta(seconds=sales[sale_id].hold_seconds) - CLOCK_SLACK
            for sale_id, before in seen.items()
            if before.confirmed_at is not None
        }
        activity = selectors.hold_activity(created_after)
        for sale_id, (held, newest_confirm) in activity.items():
            group, before = realtime.sale_group(sale_id), seen[sale_id]
            last_confirm = before.confirmed_at
            if newest_confirm is not None and last_confirm is not None and newest_confirm > last_confirm:
                confirmed = selectors.confirmed_after(
                    sale_id=sale_id,
                    after=last_confirm,
                    created_after=created_after[sale_id],
                    up_to_id=ids_announced[sale_id],
                    limit=realtime.PURCHASE_BURST,
                )
                messages.extend(_purchase_messages(group, sale_id, reversed(confirmed)))
                before.confirmed_at = newest_confirm
            if held != before.held:
                held_message = realtime.held_message(sale_id=sale_id, held_stock=held)
                messages.append((group, realtime.SALE_EVENT, {"held": held_message}))
                before.held = held
        offered_after = {sale_id: before.offered_at or now for sale_id, before in seen.items()}
        for entry in selectors.waitlist_offers_after(offered_after):
            hold = entry.purchase
            if hold is None or entry.served_at is None:
                continue
            offer = realtime.offer_message(
                sale_id=entry.sale_id, purchase_id=hold.pk, user_name=entry.user.name, expires_at=hold.expires_at
            )
            messages.append((realtime.sale_group(entry.sale_id), realtime.SALE_EVENT, {"offer": offer}))
            seen[entry.sale_id].offered_at = entry.served_at
        return messages

    @staticmethod
    def _stock(sale: FlashSale) -> dict:
        return realtime.stock_message(
            sale_id=sale.pk, current_stock=sale.current_stock, stock_version=sale.stock_version
        )


def _purchase_messages(group: str, sale_id: int, purchases) -> list[tuple[str, str, dict]]:
    """The leaderboard's `purchase` message of each purchase, in the order given."""
    return [
        (
            group,
            realtime.SALE_EVENT,
            {
                "purchase": realtime.purchase_message(
                    sale_id=sale_id,
                    user_name=purchase.user.name,
                    quantity=purchase.quantity,
                    timestamp=purchase.created_at,
                )
            },
        )
        for purchase in purchases
    ]
