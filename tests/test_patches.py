"""What core/patches.py relies on in its libraries, asserted against the installed versions.

A failure here after an upgrade means: re-read the patch and its reason against the new version,
then move WRITTEN_FOR. Behaviour through the patches is proven elsewhere (the status phrases and
the idle timeout in test_attacks_http, the socket limits in test_realtime_limits, the shared Redis
client in test_redis_isolation and test_faults_cache, the pool's slices in test_postgresql_backend,
the SQLite write queue in test_first_command).
"""

import inspect
from functools import partial
from importlib.metadata import version

import pytest

from core import patches


@pytest.mark.parametrize("distribution", sorted(patches.WRITTEN_FOR))
def test_the_installed_library_is_the_version_the_patches_were_written_for(distribution):
    assert version(distribution) == patches.WRITTEN_FOR[distribution]


def test_twisted_looks_reason_phrases_up_in_a_module_level_table_that_lacks_429():
    from twisted.web import http

    assert isinstance(http.RESPONSES, dict)
    assert "RESPONSES" in inspect.getsource(http.Request.setResponseCode)
    patches.complete_twisted_reason_phrases()
    assert http.RESPONSES[429] == b"Too Many Requests"


def test_daphne_builds_its_http_factory_from_the_module_global_when_it_starts_serving():
    from daphne import http_protocol, server

    assert "self.http_factory = HTTPFactory(self)" in inspect.getsource(server.Server.run)
    assert issubclass(server.HTTPFactory, http_protocol.HTTPFactory)
    assert "timeOut" in inspect.getsource(http_protocol.HTTPFactory) or hasattr(http_protocol.HTTPFactory, "timeOut")


def test_autobahn_imports_its_log_decorators_as_names_of_the_modules_that_call_them():
    from autobahn.twisted import websocket as twisted_websocket
    from autobahn.websocket import protocol

    for module in (protocol, twisted_websocket):
        assert callable(module.hltype) and callable(module.hlval)
    assert "hlval(" in inspect.getsource(protocol.WebSocketProtocol.sendData)


def test_daphne_hands_the_application_a_partial_of_handle_reply_over_the_protocol():
    from daphne import server

    assert "send=partial(self.handle_reply, protocol)" in inspect.getsource(server.Server.create_application)

    class Protocol:
        def sendCloseFrame(self, code, isReply):
            pass

    protocol = Protocol()
    assert patches.daphne_protocol(partial(server.Server.handle_reply, protocol)) is protocol
    assert patches.daphne_protocol(lambda message: None) is None


def test_django_redis_keeps_its_client_in_a_client_slot_that_its_close_reads():
    from django_redis.cache import RedisCache

    cache = RedisCache("redis://127.0.0.1:1/0", {})
    assert cache._client is None
    assert all(hasattr(cache, name) for name in ("_server", "_params", "_client_cls"))
    assert "self._client" in inspect.getsource(RedisCache.client.fget)
    assert "self._client" in inspect.getsource(RedisCache.close)


def test_psycopg_pool_getconn_without_a_timeout_waits_the_pools_own_timeout():
    from psycopg_pool import ConnectionPool

    assert inspect.signature(ConnectionPool.getconn).parameters["timeout"].default is None
    assert "timeout = self.timeout" in inspect.getsource(ConnectionPool.getconn)
    pool = ConnectionPool("dbname=none", open=False, timeout=7)
    assert patches.pool_wait(pool) == 7
    patches.set_pool_wait(pool, 1.0)
    assert pool.timeout == 1.0


def test_djangos_transactions_go_through_the_private_hooks_the_sqlite_write_queue_wraps():
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.sqlite3.base import DatabaseWrapper

    source = inspect.getsource(BaseDatabaseWrapper)
    for call in ("self._commit()", "self._rollback()", "self._close()"):
        assert call in source
    assert "self._start_transaction_under_autocommit()" in inspect.getsource(BaseDatabaseWrapper.set_autocommit)
    assert "_start_transaction_under_autocommit" in vars(DatabaseWrapper)
