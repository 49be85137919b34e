import logging
import os
import signal
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from idempotency.services import purge_expired
from live import events, realtime
from live.clock_lease import ClockLease
from live.queue_news import LineNews, announce_lines
from sales import holds, line_cache, queue, selectors

logger = logging.getLogger("flashsale.saleclock")

# Where the clock stopped, so a restarted clock still announces what passed while it was down.
SINCE_KEY = "saleclock:since"
# Transitions older than this when the clock (re)starts are not announced: pages re-read a
# snapshot on reconnect anyway, and a flood of stale "started" messages would only confuse them.
MAX_CATCH_UP = timedelta(minutes=5)
# After a failed tick the clock waits before trying again, doubling up to this: a database that
# is restarting is not hammered, and one that is back is noticed within seconds.
MAX_BACKOFF_SECONDS = 5.0


class Command(BaseCommand):
    help = (
        "Announce sale starts and ends over the channel layer (status messages on ws/sales/...), return "
        "expired holds to their sales, and "
        "delete expired idempotency keys every IDEMPOTENCY_PURGE_SECONDS. Run one on every app host: one "
        "of them (the holder of a PostgreSQL advisory lock) does both, the others take over when it dies. "
        "Its announcements need REDIS_URL to reach the Daphne processes."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The lines this clock last told (queue_advanced); a clock taking over tells them afresh.
        self.line_news = LineNews()

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between ticks (default 0.5)")
        parser.add_argument("--ticks", type=int, default=0, help="stop after this many ticks (0: run until stopped)")
        parser.add_argument(
            "--parent", type=int, default=0, help="exit when this process id is no longer our parent (scripts/serve)"
        )

    def handle(self, *args, interval, ticks, parent, **options):
        self._running = True
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._run(interval, ticks, parent)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self, interval, ticks, parent):
        self.stdout.write(f"sale clock: ticking every {interval}s")
        # Every app host runs a clock; only the lease holder announces (live/clock_lease.py).
        lease = ClockLease()
        leading = False
        since = None
        done = 0
        next_purge = time.monotonic()
        backoff = 0.0
        try:
            while self._running and (not ticks or done < ticks):
                if parent and os.getppid() != parent:
                    break
                try:
                    if lease.renew():
                        if not leading:
                            # Taking over: resume where the last holder stopped, so nothing that
                            # passed while no clock (or a dying one) held the lease goes unannounced.
                            leading, since = True, self._resume_point(since)
                            self.stdout.write("sale clock: leading")
                        since = self.tick(since)
                        if time.monotonic() >= next_purge:
                            self.purge()
                            next_purge = time.monotonic() + settings.IDEMPOTENCY_PURGE_SECONDS
                    elif leading or done == 0:
                        leading = False
                        self.stdout.write("sale clock: standing by (another host's clock announces)")
                except DatabaseError:
                    backoff = self._outage(backoff)
                    # Let the lease go too: another host's clock, or this one once the database
                    # answers again, takes over from SINCE_KEY and announces what passed meanwhile.
                    lease.close()
                    leading = False
                else:
                    if backoff:
                        self.stdout.write("sale clock: the database answers again")
                    backoff = 0.0
                done += 1
                if self._running and (not ticks or done < ticks):
                    time.sleep(max(interval, backoff))
        finally:
            lease.close()
        self.stdout.write("sale clock: stopped")

    def _outage(self, backoff: float) -> float:
        """A tick failed on the database (restarted, unreachable): drop the connection, whose
        session is gone, so the next tick opens a new one; return how long to wait before it."""
        if not backoff:
            # Once per outage, not once per tick.
            logger.warning("sale clock: the database is unavailable; retrying", exc_info=True)
            self.stdout.write("sale clock: the database is unavailable; retrying")
        try:
            connection.close()
        except DatabaseError:
            pass
        return min(MAX_BACKOFF_SECONDS, max(0.5, backoff * 2))

    @staticmethod
    def _resume_point(own: datetime | None) -> datetime:
        """Where the last holder stopped (SINCE_KEY); failing that, where this clock itself stopped
        (`own`): a clock whose ticks failed before it ever recorded a moment, or whose record Redis
        lost, still announces what passed while it waited for the database."""
        now = timezone.now()
        since = cache.get(SINCE_KEY) or own
        if since is None or now - since > MAX_CATCH_UP:
            since = now
        return since

    def tick(self, since):
        """Announce every start and end in (since, now]; return now."""
        if not connection.in_atomic_block:
            # A long-running process: drop a connection the database or pool has closed meanwhile.
            close_old_connections()
        # Holds past their expiresAt come back to their sales: one statement, pushed after it commits.
        holds.expire_holds()
        # Waiting rooms: the pre-queue's draw at the start, then every new place's position.
        queue.number_places()
        queue.admit()
        now = timezone.now()
        rooms = selectors.open_waiting_rooms(now)
        # What a waiting buyer's place read answers from the cache (sales/line_cache.py).
        line_cache.publish(rooms)
        # Each open line that moved, at most once a second per sale: not a message per waiting buyer.
        announce_lines(self.line_news, rooms)
        passed = selectors.sales_whose_window_passed(since=since, until=now)
        for sale in passed:
            events.sale_window_passed(sale_id=sale.pk, status=sale.status_at(now))
            reason = realtime.queue_closing_reason(sale, now)
            if reason is not None:
                # A waiting room whose end passed: everyone still in line is told at once.
                events.queue_closed(sale_id=sale.pk, reason=reason)
        if passed:
            realtime.announce_featured()
        cache.set(SINCE_KEY, now, timeout=None)
        return now

    def purge(self) -> None:
        """Delete expired idempotency keys; a failure waits for the next round, the clock ticks on."""
        try:
            deleted = purge_expired()
        except DatabaseError:
            logger.warning("could not purge expired idempotency keys", exc_info=True)
            return
        if deleted:
            self.stdout.write(f"sale clock: deleted {deleted} expired idempotency keys")

    def _stop(self, *_):
        self._running = False
