"""Per-process fan-out: one channel-layer member per process, sockets fed from memory.

Why: when every socket was its own member of `sale.<id>`, a burst of 200 purchases watched by
1000 sockets meant 200 x 1000 consumer handler calls (each with its own thread hop for Django's
connection cleanup) and, with channels_redis' core layer, channel-name lists of every member in
every message. The Daphne processes fell minutes behind and the core layer's 60 s expiry then
dropped the final stock silently (docs/performance.md "WebSocket fan-out").

Here each event loop (one per Daphne process; tests get a new loop per test) has one `Hub` with one
channel. The hub joins `sale.<id>` when the first local socket of that sale connects and leaves it
when the last one goes, and joins `sales.lifecycle` while any local socket follows
`ws/sales/active/`. Each committed write therefore reaches a process once, whatever the number of
its sockets. Per sale the hub keeps the newest stock it has seen (a higher `stockVersion`, which
grows with every change of the stock and never with a staff edit of other fields, replaces it,
never a lower one) and pushes to its sockets coalesced: a stock change goes out at once if the sale
was quiet for STOCK_PUSH_INTERVAL_MS, otherwise the newest value goes out when the interval is
over, so the final value is always sent. Each message is serialised once per flush, not per socket.

Per socket (`Watcher`) the hub still keeps the highest stock version it wrote, so a socket never goes
back in time, and a socket that is still connecting (between joining and sending its snapshot read
from the database) collects what the hub pushes in an outbox that is replayed, through the same
version guard, right after its snapshot: nothing committed after the snapshot's read is lost, and
nothing older than it is shown after it.

If the hub's receive from the channel layer fails (Redis gone), it closes its sockets: pages
reconnect with backoff and read a fresh snapshot, instead of silently showing a frozen stock.
"""

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings
from django.utils import timezone

from live import realtime
from live.db_feed import DatabaseFeed
from live.layer_sender import drop_idle_connections, unbatch

logger = logging.getLogger("flashsale.realtime")

PURCHASE_BURST = realtime.PURCHASE_BURST
# Pushes kept for a socket that is still connecting. The flush interval bounds them to a few per
# interval, and the newest stock is re-offered on going live anyway, so this only caps memory.
OUTBOX_LIMIT = 500
# Sockets written per flush before the event loop gets a turn for other work. An HTTP request to
# the process (a load balancer's health check) needs several turns: a smaller batch answered
# readiness sooner under a fan-out for the same CPU per message (docs/performance.md "WebSocket
# fan-out" and "Measured reasons behind the code").
YIELD_EVERY = 20
# Close code for sockets whose process lost the channel layer: "try again later".
CLOSE_LAYER_LOST = 1013


def _interval() -> float:
    return getattr(settings, "STOCK_PUSH_INTERVAL_MS", 75) / 1000


def _queue_interval() -> float:
    return getattr(settings, "QUEUE_PUSH_INTERVAL_MS", 1000) / 1000


def _text(message: dict) -> str:
    return json.dumps(message, separators=(",", ":"))


def _admitted_through(snapshot_text: str) -> int:
    """How far a waiting room's snapshot says admission reached (0 for a sale without one). Snapshots
    are rare (one per connect or staff edit), so reading it back beats a field in every push."""
    if '"admittedThrough"' not in snapshot_text:
        return 0
    return json.loads(snapshot_text).get("admittedThrough") or 0


class Watcher:
    """One socket as the hub sees it: which sale it shows, and the newest stock version it has shown."""

    def __init__(self, send: Callable[[str], Awaitable[None]], close: Callable[[int], Awaitable[None]]):
        self._send = send
        self._close = close
        self.sale_id: int | None = None
        self.last_version = 0
        # How far admission reached in the last waiting-room figures this socket showed: a line's
        # admittedThrough only grows, so a figure older than the snapshot is never shown after it.
        self.admitted_through = 0
        # Pushes held while the socket has not sent its snapshot yet; None once it is live.
        self.outbox: deque | None = deque(maxlen=OUTBOX_LIMIT)
        self.featured_later: dict | None = None  # a home-page switch announced while connecting
        self.closed = False
        # Set when the hub lost the channel layer while this socket was connecting: a close sent
        # before the handshake is accepted never reaches the page, so go_live sends it instead.
        self.close_when_live: int | None = None

    async def deliver(self, sale_id: int | None, kind: str, version: int | None, text: str) -> None:
        if self.closed or sale_id != self.sale_id:
            return  # gone, or switched to another sale since this push was prepared
        if self.outbox is not None:
            self.outbox.append((sale_id, kind, version, text))
            return
        await self.write(kind, version, text)

    async def write(self, kind: str, version: int | None, text: str) -> None:
        """Send now, unless it would show an older version than this socket already showed."""
        if kind == "stock":
            assert version is not None  # every stock push carries its stock version
            if version <= self.last_version:
                return
            self.last_version = version
        elif kind == "snapshot":
            if version is not None and version < self.last_version:
                return
            self.last_version = version or 0
            self.admitted_through = max(self.admitted_through, _admitted_through(text))
        elif kind == "queue":
            assert version is not None  # every line push carries how far admission reached
            if version < self.admitted_through:
                return
            self.admitted_through = version
        if self.closed:
            return
        try:
            await self._send(text)
        except Exception:  # a socket that went away mid-push; its disconnect removes it
            logger.debug("push to a closing socket failed", exc_info=True)

    async def close(self, code: int) -> None:
        self.closed = True
        try:
            await self._close(code)
        except Exception:
            logger.debug("closing a socket failed", exc_info=True)


class _Feed:
    """One sale's local sockets and its coalescing state."""

    def __init__(self, sale_id: int):
        self.sale_id = sale_id
        # Before the first socket read its snapshot: what the database feed reports from (live/db_feed.py).
        self.since = timezone.now()
        self.watchers: dict[Watcher, None] = {}  # insertion-ordered set
        self.newest_stock: dict | None = None
        self.stock_pending = False
        self.pending_purchases: deque = deque(maxlen=PURCHASE_BURST)
        self.last_flush = 0.0
        self.timer: asyncio.Task | None = None
        # A waiting room's line (queue_advanced): the newest figures not yet written, written at most
        # once per QUEUE_PUSH_INTERVAL_MS, and whether the line was told closed (nothing after that
        # but a reopening: a status "active" or a snapshot saying so, after a restock).
        self.newest_line: dict | None = None
        self.last_line_write = float("-inf")
        self.line_timer: asyncio.Task | None = None
        self.line_closed = False
        # Writes to this sale's sockets never interleave: a status must not overtake the stock of a
        # flush that is halfway through the sockets.
        self.lock = asyncio.Lock()

    def cancel_timers(self) -> None:
        for timer in (self.timer, self.line_timer):
            if timer is not None:
                timer.cancel()

    def offer_stock(self, stock: dict) -> None:
        if self.newest_stock is None or stock["stockVersion"] > self.newest_stock["stockVersion"]:
            self.newest_stock = stock
            self.stock_pending = True


class Hub:
    """The fan-out of one event loop (one per Daphne process). Get it with `hub()`."""

    def __init__(self):
        self.layer: BaseChannelLayer | None = None
        self.channel: str | None = None
        self.task: asyncio.Task | None = None
        # Reads pushes from the database when no channel layer crosses processes (live/db_feed.py).
        self.poller: asyncio.Task | None = None
        self.feeds: dict[int, _Feed] = {}
        self.followers: dict[Watcher, None] = {}
        # Membership changes (group_add/group_discard, starting and stopping the receive loop).
        self.lock = asyncio.Lock()

    # --- sockets joining and leaving -------------------------------------------------------

    async def watch(self, watcher: Watcher, sale_id: int | None) -> None:
        """Attach `watcher` to `sale_id` (None: no sale). It stays connecting until `go_live`."""
        async with self.lock:
            await self._move(watcher, sale_id)

    async def follow_featured(self, watcher: Watcher) -> None:
        """`watcher` follows the home page's sale (`ws/sales/active/`)."""
        async with self.lock:
            if not self.followers:
                await self._start()
                assert self.layer is not None and self.channel is not None  # set by _start
                try:
                    await self.layer.group_add(realtime.LIFECYCLE_GROUP, self.channel)
                except BaseException:
                    await self._stop_if_idle()
                    raise
            self.followers[watcher] = None

    async def go_live(self, watcher: Watcher, snapshot: dict) -> None:
        """Send the socket its snapshot, then what arrived for it meanwhile, then live pushes."""
        if watcher.close_when_live is not None:
            await watcher.close(watcher.close_when_live)
            return
        feed = self.feeds.get(watcher.sale_id) if watcher.sale_id is not None else None
        if feed is None:
            watcher.outbox = None
            await watcher.write("snapshot", snapshot.get("stockVersion"), _text(snapshot))
        else:
            async with feed.lock:
                await watcher.write("snapshot", snapshot.get("stockVersion"), _text(snapshot))
                backlog, watcher.outbox = watcher.outbox or (), None
                for sale_id, kind, version, text in backlog:
                    if sale_id == watcher.sale_id:
                        await watcher.write(kind, version, text)
                if feed.newest_stock is not None:
                    # Covers an outbox that overflowed, or a value the feed had before this socket.
                    await watcher.write("stock", feed.newest_stock["stockVersion"], _text(feed.newest_stock))
        later, watcher.featured_later = watcher.featured_later, None
        if later is not None:
            await self._switch(watcher, later)

    async def leave(self, watcher: Watcher) -> None:
        """The socket is gone: forget it, and leave the groups nobody here needs any more."""
        watcher.closed = True
        async with self.lock:
            if watcher.sale_id is not None:
                await self._leave_feed(watcher, watcher.sale_id)
                watcher.sale_id = None
            if watcher in self.followers:
                del self.followers[watcher]
                if not self.followers and self.channel is not None:
                    await self._group_discard(realtime.LIFECYCLE_GROUP)
            await self._stop_if_idle()

    async def _move(self, watcher: Watcher, sale_id: int | None) -> None:
        if watcher.sale_id == sale_id:
            return
        if watcher.sale_id is not None:
            await self._leave_feed(watcher, watcher.sale_id)
        watcher.sale_id = None
        watcher.last_version = watcher.admitted_through = 0
        if sale_id is None:
            return
        feed = self.feeds.get(sale_id)
        if feed is None:
            await self._start()
            assert self.layer is not None and self.channel is not None  # set by _start
            feed = _Feed(sale_id)
            try:
                await self.layer.group_add(realtime.sale_group(sale_id), self.channel)
            except BaseException:
                await self._stop_if_idle()
                raise
            self.feeds[sale_id] = feed
        feed.watchers[watcher] = None
        watcher.sale_id = sale_id

    async def _leave_feed(self, watcher: Watcher, sale_id: int) -> None:
        feed = self.feeds.get(sale_id)
        if feed is None:
            return
        feed.watchers.pop(watcher, None)
        if feed.watchers:
            return
        del self.feeds[sale_id]
        feed.cancel_timers()
        await self._group_discard(realtime.sale_group(sale_id))

    async def _group_discard(self, group: str) -> None:
        if self.layer is None or self.channel is None:
            return  # never started, or the channel is gone: no membership to leave
        try:
            await self.layer.group_discard(group, self.channel)
        except Exception:
            # The membership expires on its own (channels_redis' group_expiry); messages to a
            # channel nobody reads expire too.
            logger.warning("leaving %s failed", group, exc_info=True)

    # --- the receive loop ------------------------------------------------------------------

    async def _start(self) -> None:
        if self.task is not None:
            return
        self.layer = get_channel_layer()
        assert self.layer is not None  # settings always configure the default layer
        self.channel = await self.layer.new_channel()
        self.task = asyncio.get_running_loop().create_task(self._run(self.channel))
        if settings.REALTIME_POLL_MS > 0:
            self.poller = asyncio.get_running_loop().create_task(DatabaseFeed(self).run())

    def _stop_poller(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
            self.poller = None

    async def _stop_if_idle(self) -> None:
        if self.feeds or self.followers or self.task is None:
            return
        task, self.task, self.channel = self.task, None, None
        self._stop_poller()
        task.cancel()
        if task is not asyncio.current_task():
            await asyncio.wait([task])

    async def _run(self, channel: str) -> None:
        assert self.layer is not None  # set by _start, before this loop
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("the real-time hub lost the channel layer; closing its sockets")
                # Not while a socket is halfway through joining (its group_add in flight): it would
                # be attached afterwards to a sale whose channel nobody receives on any more.
                async with self.lock:
                    await self._drop_everyone()
                return
            # A batch (the messages one process's sender had waiting for a group) is handled as if
            # each had come alone, in its order.
            for event in unbatch(message):
                try:
                    await self._dispatch(event)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("real-time hub failed to handle %s", event.get("type"))

    async def _drop_everyone(self) -> None:
        """Close every local socket; their pages reconnect and read a fresh snapshot."""
        watchers = {w: None for feed in self.feeds.values() for w in feed.watchers} | self.followers
        for feed in self.feeds.values():
            feed.cancel_timers()
        groups = [realtime.sale_group(sale_id) for sale_id in self.feeds]
        if self.followers:
            groups.append(realtime.LIFECYCLE_GROUP)
        channel = self.channel
        assert self.layer is not None and channel is not None  # only the running receive loop drops
        self._stop_poller()
        self.feeds, self.followers = {}, {}
        self.task, self.channel = None, None
        for watcher in watchers:
            watcher.sale_id = None
            if watcher.outbox is None:
                await watcher.close(CLOSE_LAYER_LOST)
            else:
                watcher.close_when_live = CLOSE_LAYER_LOST
        # A restarted Redis closed every idle pooled connection of this loop too, and the next
        # socket's join or receive would fail on one.
        try:
            await asyncio.wait_for(drop_idle_connections(self.layer), timeout=2)
        except Exception:
            logger.warning("closing the channel layer's connections failed", exc_info=True)
        # Best effort, after the sockets are told: the layer may well be unreachable (memberships
        # then expire with channels_redis' group_expiry). The next socket starts a new channel.
        for group in groups:
            try:
                await asyncio.wait_for(self.layer.group_discard(group, channel), timeout=2)
            except Exception:
                logger.warning("leaving %s after losing the channel layer failed", group, exc_info=True)

    async def _dispatch(self, event: dict) -> None:
        message = event.get("message") or {}
        if event.get("type") == realtime.SALE_EVENT:
            sale_id = next(part["saleId"] for part in message.values())
            feed = self.feeds.get(sale_id)
            if feed is not None:
                await self._sale_event(feed, message)
        elif event.get("type") == realtime.FEATURED:
            await self._featured(message["snapshot"])

    # --- one sale's pushes -----------------------------------------------------------------

    async def _sale_event(self, feed: _Feed, message: dict) -> None:
        if "snapshot" in message:
            snapshot = message["snapshot"]
            if snapshot.get("queueClosed") is False:
                feed.line_closed = False  # restocked: the line moves again
            await self._to_all(feed, [("snapshot", snapshot["stockVersion"], _text(snapshot))])
        if "stock" in message:
            feed.offer_stock(message["stock"])
        if "purchase" in message:
            feed.pending_purchases.append(message["purchase"])
        if "stock" in message or "purchase" in message:
            await self._schedule_flush(feed)
        for kind in ("held", "offer"):
            # Holds: the units held in the sale, and a waitlist offer; passed on as they come.
            if kind in message:
                await self._to_all(feed, [(kind, None, _text(message[kind]))])
        if "status" in message:
            # A status must never overtake the stock it results from (sold out after the last 0).
            async with feed.lock:
                await self._flush_locked(feed)
                await self._to_all_locked(feed, [("status", None, _text(message["status"]))])
            if message["status"]["status"] == "active":
                feed.line_closed = False  # a restock of a sold-out sale reopens its line
        if "queueAdvanced" in message:
            await self._line_moved(feed, message["queueAdvanced"])
        if "queueClosed" in message:
            # After the status it comes with; once per closing, and no line figure after it.
            async with feed.lock:
                if feed.line_timer is not None:
                    feed.line_timer.cancel()
                feed.newest_line = None
                if not feed.line_closed:
                    feed.line_closed = True
                    await self._to_all_locked(feed, [("queue_closed", None, _text(message["queueClosed"]))])

    # --- a waiting room's line: at most one write per interval per sale ----------------------

    async def _line_moved(self, feed: _Feed, line: dict) -> None:
        """Leading edge now if no line figure went out within the interval, else the newest one
        when the interval is over (like the stock, over a longer interval)."""
        if feed.line_closed:
            return  # a figure read before the sale closed, arriving after it
        newest = feed.newest_line
        if newest is not None and line["admittedThrough"] < newest["admittedThrough"]:
            return  # an older reading from another source
        feed.newest_line = line
        if feed.line_timer is not None and not feed.line_timer.done():
            return
        delay = feed.last_line_write + _queue_interval() - time.monotonic()
        if delay <= 0:
            await self._write_line(feed)
        else:
            feed.line_timer = asyncio.get_running_loop().create_task(self._write_line_after(feed, delay))

    async def _write_line_after(self, feed: _Feed, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._write_line(feed)

    async def _write_line(self, feed: _Feed) -> None:
        async with feed.lock:
            line, feed.newest_line = feed.newest_line, None
            if line is None or feed.line_closed:
                return
            await self._to_all_locked(feed, [("queue", line["admittedThrough"], _text(line))])
            # From the end of the writes, as for the stock: every socket's figures are an interval apart.
            feed.last_line_write = time.monotonic()

    async def _schedule_flush(self, feed: _Feed) -> None:
        """Leading edge now, if the sale was quiet for an interval; otherwise one trailing flush."""
        if feed.timer is not None and not feed.timer.done():
            return  # a flush is already due and will carry the newest pending value
        delay = feed.last_flush + _interval() - time.monotonic()
        if delay <= 0:
            async with feed.lock:
                await self._flush_locked(feed)
        else:
            feed.timer = asyncio.get_running_loop().create_task(self._flush_after(feed, delay))

    async def _flush_after(self, feed: _Feed, delay: float) -> None:
        while True:
            await asyncio.sleep(delay)
            async with feed.lock:
                await self._flush_locked(feed)
            # Values that arrived while this flush was writing found it still running and left
            # themselves to it, but it had already taken what was pending: one more round for them.
            # (No await between this check and the task finishing, so nothing can slip in between.)
            if not feed.stock_pending and not feed.pending_purchases:
                return
            delay = max(0.0, feed.last_flush + _interval() - time.monotonic())

    async def _flush_locked(self, feed: _Feed) -> None:
        purchases = list(feed.pending_purchases)
        feed.pending_purchases.clear()
        stock = feed.newest_stock if feed.stock_pending else None
        feed.stock_pending = False
        if stock is None and not purchases:
            return
        pushes = [("purchase", None, _text(purchase)) for purchase in purchases]
        if stock is not None:
            pushes.append(("stock", stock["stockVersion"], _text(stock)))
        await self._to_all_locked(feed, pushes)
        # The interval counts from the end of the writes: with a thousand sockets a flush takes a
        # while, and counting from its start would chain flushes back to back and starve the
        # receive loop of the event loop, so the channel layer's messages would pile up unread.
        feed.last_flush = time.monotonic()

    async def _to_all(self, feed: _Feed, pushes: list[tuple]) -> None:
        async with feed.lock:
            await self._to_all_locked(feed, pushes)

    async def _to_all_locked(self, feed: _Feed, pushes: list[tuple]) -> None:
        for count, watcher in enumerate(list(feed.watchers), start=1):
            for kind, version, text in pushes:
                await watcher.deliver(feed.sale_id, kind, version, text)
            if count % YIELD_EVERY == 0:
                # A socket write does not suspend, so a long flush would hold the event loop;
                # let the receive loop (and pings, handshakes) in between.
                await asyncio.sleep(0)

    # --- ws/sales/active/ ------------------------------------------------------------------

    async def _featured(self, snapshot: dict) -> None:
        for watcher in list(self.followers):
            if watcher.closed:
                continue
            if watcher.outbox is not None:
                watcher.featured_later = snapshot  # still connecting: applied once it is live
                continue
            await self._switch(watcher, snapshot)

    async def _switch(self, watcher: Watcher, snapshot: dict) -> None:
        if snapshot.get("saleId") == watcher.sale_id or watcher.closed:
            return  # same sale: its own group already carries the news
        # Connecting again, so nothing of the new sale reaches it before the snapshot.
        watcher.outbox = deque(maxlen=OUTBOX_LIMIT)
        async with self.lock:
            if watcher.closed:
                return
            await self._move(watcher, snapshot.get("saleId"))
        await self.go_live(watcher, snapshot)

    # --- for tests and diagnostics ---------------------------------------------------------

    def sockets_of(self, sale_id: int) -> int:
        feed = self.feeds.get(sale_id)
        return len(feed.watchers) if feed else 0


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def hub() -> Hub:
    """The hub of the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        for old in [other for other in _hubs if other.is_closed()]:
            del _hubs[old]
        found = _hubs[loop] = Hub()
    return found
