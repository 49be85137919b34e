"""Every place flashsale relies on a library's internals, in one module.

Each patch names what it relies on; WRITTEN_FOR holds the versions it was written and checked for,
and tests/test_patches.py fails when an installed version differs or when what a patch relies on is
gone: on an upgrade, re-check the patch (and its reason) before changing the pin. Nothing here
imports an app.

- Twisted's table of reason phrases (`twisted.web.http.RESPONSES`), completed.
- Daphne's HTTP factory (`daphne.server.HTTPFactory`, looked up when Daphne starts serving),
  replaced by one with an idle timeout.
- autobahn's log decorators (`hltype`, `hlval`, imported names of two of its modules), replaced.
- Daphne's `send` (`partial(Server.handle_reply, protocol)`): the socket's autobahn protocol.
- django-redis' RedisCache `_client` slot, filled with a client shared per process.
- psycopg_pool's `ConnectionPool.timeout`, the wait of a getconn() called without one.
- Django's SQLite backend transaction hooks (`_start_transaction_under_autocommit`, `_commit`,
  `_rollback`, `_close`), wrapped to queue a process's writers.
"""

import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from django.db import OperationalError

WRITTEN_FOR = {
    "Twisted": "26.10.0",
    "daphne": "4.2.3",
    "autobahn": "26.11.1",
    "django-redis": "7.0.0",
    "psycopg-pool": "3.3.3",
    "Django": "5.2.19",
}


# --- Daphne, Twisted and autobahn (applied by flashsale/asgi.py) --------------------------------


def complete_twisted_reason_phrases() -> None:
    """Daphne hands Twisted only the status code (ASGI has no reason phrase), and Twisted's table has
    none for 422 or 429: they went out as "HTTP/1.1 429 Unknown Status". Add the standard phrases
    it lacks; the ones it has stay as they are."""
    try:
        from twisted.web.http import RESPONSES
    except ImportError:  # served by something other than Daphne
        return
    for status in HTTPStatus:
        RESPONSES.setdefault(status.value, status.phrase.encode("ascii"))


def bound_daphnes_wait_for_headers(idle_timeout: int) -> None:
    """Slow headers: Twisted drops an HTTP connection only after 60 s without a byte, and Daphne
    offers no setting, so a client holding many half-sent requests could take the process to its
    file limit. Daphne builds its HTTP factory when it starts serving, after importing the ASGI
    module: give it `idle_timeout`. Twisted suspends that timeout once a request's headers are in,
    and an upgraded WebSocket leaves the HTTP channel behind, so open sockets are not affected."""
    try:
        from daphne import http_protocol, server
    except ImportError:  # served by something other than Daphne
        return
    if not idle_timeout:
        return

    class HTTPFactory(http_protocol.HTTPFactory):
        def __init__(self, daphne_server):
            super().__init__(daphne_server)
            self.timeOut = idle_timeout

    server.HTTPFactory = HTTPFactory


def _undecorated(value, *args, **kwargs):
    return value


def plain_autobahn_log_arguments() -> None:
    """autobahn dresses the arguments of its debug log calls in ANSI colours (`hltype`, `hlval`,
    through click when it is installed) before making the call, debug logging on or off, and
    `sendData` does it on every frame: a large share of a Daphne process's CPU per WebSocket message
    of a fan-out (docs/performance.md "WebSocket fan-out"). Hand the values over as they are: nothing is
    computed unless a debug line is written, and such a line then carries no colour codes into the
    JSON log."""
    try:
        from autobahn.twisted import websocket as twisted_websocket
        from autobahn.websocket import protocol
    except ImportError:  # served by something other than Daphne
        return
    for module in (protocol, twisted_websocket):
        for name in ("hltype", "hlval"):  # imported names of those modules, not exported ones
            setattr(module, name, _undecorated)


def daphne_protocol(send: Callable[..., Any]) -> Any:
    """The autobahn protocol under a Daphne socket, or None (in-process test communicator).

    ASGI gives an application no handle on its connection; under Daphne, `send` is
    `partial(Server.handle_reply, protocol)`.
    """
    protocol = next(iter(getattr(send, "args", ())), None)
    return protocol if hasattr(protocol, "sendCloseFrame") else None


# --- django-redis ------------------------------------------------------------------------------

_redis_clients: dict[str, Any] = {}
_redis_clients_lock = threading.Lock()


def shared_django_redis_client(cache: Any) -> Any:
    """The django-redis client of `cache`, one per process and configuration, put in the cache's own
    `_client` slot (which its `client` property fills and its close() reads).

    Django keeps a cache object per thread and, under asyncio, per task context (asgiref's Local):
    every WebSocket consumer is a task of its own, so each open socket that touched the cache kept a
    client of its own, with its redis.Redis (docs/performance.md "WebSocket fan-out"). django-redis
    shares the connection pools already; its client is thread-safe, and the settings it reads from
    its backend (key prefix, version, timeout) are part of the key.
    """
    if cache._client is None:
        key = repr((cache._server, sorted(cache._params.items())))
        with _redis_clients_lock:
            if key not in _redis_clients:
                _redis_clients[key] = cache._client_cls(cache._server, cache._params, cache)
            cache._client = _redis_clients[key]
    return cache._client


# --- psycopg_pool ------------------------------------------------------------------------------


def pool_wait(pool: Any) -> float:
    """How long the pool's getconn() waits when called without a timeout (Django calls it so)."""
    return pool.timeout


def set_pool_wait(pool: Any, seconds: float) -> None:
    pool.timeout = seconds


# --- Django's SQLite backend -------------------------------------------------------------------

_sqlite_write_lock = threading.Lock()


class QueuedSQLiteWrites:
    """Mixin for Django's SQLite DatabaseWrapper: a transaction that writes takes a process-wide
    Python lock first (core/sqlite3 says why), released when the transaction ends however it ends."""

    holds_write_lock = False
    settings_dict: dict[str, Any]

    def _start_transaction_under_autocommit(self):
        # Python's sqlite3 waits 5 s for the lock unless OPTIONS say otherwise.
        if not _sqlite_write_lock.acquire(timeout=self.settings_dict["OPTIONS"].get("timeout", 5)):
            raise OperationalError("database is locked")
        self.holds_write_lock = True
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
        except BaseException:
            self._release_write_lock()
            raise

    def _release_write_lock(self):
        if self.holds_write_lock:
            self.holds_write_lock = False
            _sqlite_write_lock.release()

    def _commit(self):
        try:
            return super()._commit()  # type: ignore[misc]
        finally:
            self._release_write_lock()

    def _rollback(self):
        try:
            return super()._rollback()  # type: ignore[misc]
        finally:
            self._release_write_lock()

    def _close(self):
        try:
            return super()._close()  # type: ignore[misc]
        finally:
            self._release_write_lock()
