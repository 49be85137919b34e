"""Which app host's sale clock announces: a PostgreSQL advisory lock held on a connection of its own.

Every app host runs `manage.py runsaleclock`; the one holding the lock announces, the others try
to take it on every tick. The lock belongs to a database session, so it goes when its holder does:
a killed process's socket is closed by the kernel and PostgreSQL ends the session (and frees the
lock) at once; a host cut off from the database is dropped by TCP keepalives within seconds (the
session settings below), and its own clock stops announcing when its check of the lease fails.
The new holder resumes from the last moment the old one announced (runsaleclock's SINCE_KEY), so
a start or end that passed in between is announced late rather than never. An announcement can
at worst be sent twice (the old holder died between announcing and recording the moment); status
messages say what a sale's status is, so a second one changes nothing on a page.

The lease uses a dedicated connection, not the request pool: a pooled connection goes back to the
pool (and its session to another user) after every use.
"""

import logging

import psycopg
from django.db import connection

logger = logging.getLogger("flashsale.saleclock")

# An arbitrary constant shared by every host: the advisory lock's identity ("saleclock" in ASCII).
LOCK_KEY = 0x73616C65636C6F63
# The server drops the session of a host that stopped answering after about idle + interval * count
# seconds, which bounds how long a cut-off leader can keep the lease; the client gives up on the
# connection after tcp_user_timeout, so it stops announcing in about the same time.
SESSION_OPTIONS = "-c tcp_keepalives_idle=1 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=2"
CLIENT_TCP_USER_TIMEOUT_MS = 3000


class ClockLease:
    """`renew()` once per tick: True while this process holds the lease."""

    def __init__(self, key: int = LOCK_KEY):
        self.key = key
        self.held = False
        self._conn: psycopg.Connection | None = None

    def renew(self) -> bool:
        if connection.vendor != "postgresql":
            return True  # one process on SQLite (development): nothing to share the clock with
        try:
            if self._conn is None or self._conn.closed:
                self.held = False
                self._conn = self._connect()
            if self.held:
                # The lock lives as long as the session: a session that still answers still holds it.
                self._conn.execute("SELECT 1")
            else:
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
                self.held = row is not None and row[0]
        except psycopg.Error:
            if self.held:
                logger.warning("sale clock: lost the database session that held the lease", exc_info=True)
            self.close()
        return self.held

    def close(self) -> None:
        """Give the lease up (closing the session frees the lock)."""
        self.held = False
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    @staticmethod
    def _connect() -> psycopg.Connection:
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        options = " ".join(filter(None, [params.pop("options", ""), SESSION_OPTIONS]))
        # The lease's own, tighter values replace the pool's (settings' DB_TCP_* and DB_KEEPALIVES_*).
        params.update(
            options=options,
            autocommit=True,
            tcp_user_timeout=CLIENT_TCP_USER_TIMEOUT_MS,
            keepalives=1,
            keepalives_idle=1,
            keepalives_interval=1,
            keepalives_count=2,
        )
        return psycopg.connect(**params)
