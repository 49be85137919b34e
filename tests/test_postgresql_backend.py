"""What core/postgresql relies on in Django's PostgreSQL backend and psycopg_pool, asserted.

The backend calls the stock `get_new_connection` once per wait slice and `close_pool` to replace a
pool stuck in its reconnect back-off. If an upgrade of Django or psycopg_pool changes how those
behave, these tests fail before the fail-fast behaviour (tests/test_faults_database.py) quietly goes.
None of them needs a running PostgreSQL except the last: the others point at a port nobody listens on.
"""

import copy
import itertools

import pytest
from django.db import connection
from django.db.backends.postgresql import base as django_base
from psycopg import IsolationLevel
from psycopg_pool import ConnectionPool, PoolTimeout

from core.postgresql import base
from harness.servers import free_port

_aliases = itertools.count()


def settings_for(**changes) -> dict:
    """A complete settings dict (Django's defaults filled in) for a database of our own."""
    settings_dict = copy.deepcopy(connection.settings_dict)
    settings_dict.update(ENGINE="core.postgresql", USER="postgres", PASSWORD="", NAME="flashsale")
    settings_dict.update(changes)
    return settings_dict


@pytest.fixture
def unreachable():
    """Our backend's wrapper for a server that refuses connections, pool timeout far beyond the test's."""
    settings_dict = settings_for(
        HOST="127.0.0.1",
        PORT=str(free_port()),
        OPTIONS={"pool": {"min_size": 1, "max_size": 1, "timeout": 600}, "connect_timeout": 1},
    )
    wrapper = base.DatabaseWrapper(settings_dict, alias=f"contract-{next(_aliases)}")
    yield wrapper
    wrapper.close_pool()


def test_the_backend_is_the_stock_one_underneath():
    assert issubclass(base.DatabaseWrapper, django_base.DatabaseWrapper)
    # Overridden: only get_new_connection. Everything else (pool, close_pool, _close) is Django's own.
    overridden = {name for name in vars(base.DatabaseWrapper) if not name.startswith("__")}
    assert overridden == {"get_new_connection", "_database_answers", "_probe"}


def test_one_pool_per_alias_until_close_pool_replaces_it(unreachable):
    pool = unreachable.pool

    assert isinstance(pool, ConnectionPool)
    assert unreachable.pool is pool  # Reachability.sliced tells a fresh pool by its identity
    pool.open()
    unreachable.close_pool()

    assert pool.closed
    assert unreachable.pool is not pool


def test_each_pool_waits_one_slice_and_the_configured_wait_survives_its_replacement(unreachable):
    state = base.reachability(unreachable.alias)
    first = unreachable.pool

    assert state.sliced(first) == 600
    assert first.timeout == base.WAIT_SLICE
    unreachable.close_pool()
    second = unreachable.pool
    assert state.sliced(second) == 600 and second.timeout == base.WAIT_SLICE
    assert state.sliced(first) == 600  # a request still holding the replaced pool
    assert state.sliced(second) == 600


@pytest.mark.timeout(60)
def test_djangos_get_new_connection_waits_the_pools_own_timeout(unreachable):
    # The configured timeout is 600 s, beyond this test's 60: only a getconn() that waits
    # pool.timeout, as Reachability.sliced assumes, raises PoolTimeout in time.
    unreachable.pool.timeout = 0.2

    with pytest.raises(PoolTimeout):
        django_base.DatabaseWrapper.get_new_connection(unreachable, unreachable.get_connection_params())


@pytest.mark.timeout(60)
def test_an_unreachable_server_fails_the_first_request_in_a_slice_and_the_next_at_once(unreachable):
    params = unreachable.get_connection_params()

    with pytest.raises(unreachable.Database.OperationalError, match="unreachable"):
        unreachable.get_new_connection(params)
    assert base.reachability(unreachable.alias).down
    assert unreachable.pool.timeout == base.WAIT_SLICE

    with pytest.raises(unreachable.Database.OperationalError, match="unreachable"):
        unreachable.get_new_connection(params)  # no probe due yet: no network at all


@pytest.mark.postgres
@pytest.mark.django_db
def test_djangos_get_new_connection_applies_the_configured_isolation_level():
    settings_dict = settings_for(
        **{key: connection.settings_dict[key] for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT")},
        OPTIONS={
            **connection.settings_dict["OPTIONS"],
            "pool": {"min_size": 1, "max_size": 1, "timeout": 10},
            "isolation_level": IsolationLevel.SERIALIZABLE,
        },
    )
    wrapper = base.DatabaseWrapper(settings_dict, alias=f"contract-{next(_aliases)}")
    try:
        raw = wrapper.get_new_connection(wrapper.get_connection_params())
        try:
            assert wrapper.isolation_level == IsolationLevel.SERIALIZABLE
            assert raw.isolation_level == IsolationLevel.SERIALIZABLE
            with raw.transaction():  # psycopg starts it at the connection's level
                assert raw.execute("SHOW transaction_isolation").fetchone() == ("serializable",)
        finally:
            wrapper.pool.putconn(raw)
    finally:
        wrapper.close_pool()
