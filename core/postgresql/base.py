"""Django's PostgreSQL backend with psycopg's pool, failing fast while the server is unreachable.

With the stock backend a request waits DB_POOL_TIMEOUT (10 s) for a pooled connection when the
database is down, and after it returns the pool only reconnects when its exponential back-off says
so (we measured ~25 s). Here a request waits for a connection in short slices; when a slice runs out
one request per PROBE_INTERVAL opens a direct connection (DB_CONNECT_TIMEOUT) to tell "busy" from
"gone". Gone: the database is marked unreachable and every request fails at once (503
service_unavailable) while a probe per interval runs in the background. Back: the pool is replaced
by a fresh one, which connects immediately. A busy pool still waits the full DB_POOL_TIMEOUT.

Django does the rest (opening the pool, taking a connection, the isolation level, closing the pool):
each slice is one call of the stock `get_new_connection`. What this relies on in Django and
psycopg_pool is asserted by tests/test_postgresql_backend.py, so an upgrade that changes it fails there.
"""

import logging
import threading
import time

from django.db.backends.postgresql import base
from psycopg_pool import PoolTimeout

from core.patches import pool_wait, set_pool_wait

logger = logging.getLogger("flashsale.db")

WAIT_SLICE = 1.0
PROBE_INTERVAL = 1.0


class Reachability:
    """What this process believes about one database, shared by all its threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self.down = False
        self._next_probe = 0.0
        self._pool = None
        self._pool_timeout = 0.0

    def claim_probe(self) -> bool:
        """True for at most one caller per PROBE_INTERVAL."""
        now = time.monotonic()
        with self._lock:
            if now < self._next_probe:
                return False
            self._next_probe = now + PROBE_INTERVAL
            return True

    def mark_down(self) -> None:
        if not self.down:
            logger.error("database unreachable: failing requests fast until it answers again")
        self.down = True

    def mark_up(self) -> None:
        if self.down:
            logger.warning("database reachable again")
        self.down = False

    def sliced(self, pool) -> float:
        """The pool's configured wait, after making the pool itself wait one slice per getconn().

        Django's get_new_connection calls pool.getconn() without a timeout, so getconn waits
        the pool's own timeout: shortening it (core/patches.py) turns each call of the stock method
        into one slice.
        """
        with self._lock:
            if pool is not self._pool:
                if self._pool is None:
                    # Read once: every pool of one alias is built from the same settings, and a
                    # request still holding the pool close_pool replaced would hand back a shortened one.
                    self._pool_timeout = pool_wait(pool)
                self._pool = pool
                set_pool_wait(pool, min(WAIT_SLICE, self._pool_timeout))
            return self._pool_timeout


_states: dict[str, Reachability] = {}
_states_lock = threading.Lock()


def reachability(alias: str) -> Reachability:
    with _states_lock:
        return _states.setdefault(alias, Reachability())


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        if not self.pool:
            return super().get_new_connection(conn_params)
        state = reachability(self.alias)
        if state.down:
            if state.claim_probe():
                # In the background: on a link that drops packets a probe waits DB_CONNECT_TIMEOUT,
                # and a request that waited for it held its worker thread that long, with health
                # checks queueing behind (docs/performance.md "Measured reasons behind the code").
                threading.Thread(target=self._probe, args=(state, conn_params), daemon=True).start()
            raise self.Database.OperationalError("the database is unreachable")
        deadline = time.monotonic() + state.sliced(self.pool)
        while True:
            try:
                return super().get_new_connection(conn_params)
            except PoolTimeout:
                if time.monotonic() >= deadline:
                    raise
            # No connection yet: a busy pool (keep waiting) or a dead database (give up now)?
            if state.down:
                raise self.Database.OperationalError("the database is unreachable")
            if state.claim_probe() and not self._database_answers(conn_params):
                state.mark_down()
                raise self.Database.OperationalError("the database is unreachable")

    def _database_answers(self, conn_params) -> bool:
        try:
            self.Database.connect(**conn_params).close()
        except self.Database.Error:
            return False
        return True

    def _probe(self, state: Reachability, conn_params) -> None:
        if self._database_answers(conn_params):
            # The old pool may be deep in its reconnect back-off; a new one connects right away.
            # Replaced before requests may use the database again.
            self.close_pool()
            state.mark_up()
