"""The sale clock's own loop (manage.py runsaleclock): where it resumes announcing after a failed tick."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import DatabaseError
from django.utils import timezone

from live import events
from live.management.commands.runsaleclock import SINCE_KEY
from sales import holds
from tests.factories import SaleFactory

# Committed: the clock drops its connection after a failed tick, as it must after a real outage.
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_clock_whose_ticks_failed_before_it_recorded_a_moment_announces_the_start_that_passed_meanwhile(
    monkeypatch,
):
    # No moment recorded by any clock (a first start, or Redis restarted empty); the database then
    # fails the first two ticks, and the sale starts during the back-off (0.5 s, then 1 s).
    cache.delete(SINCE_KEY)
    sale = SaleFactory(start_time=timezone.now() + timedelta(seconds=1))
    announced = []
    monkeypatch.setattr(events, "sale_window_passed", lambda *, sale_id, status: announced.append((sale_id, status)))
    failures = [DatabaseError("the database restarted"), DatabaseError("a stale pooled connection")]
    expire_holds = holds.expire_holds

    def failing_first():
        if failures:
            raise failures.pop(0)
        return expire_holds()

    monkeypatch.setattr(holds, "expire_holds", failing_first)

    call_command("runsaleclock", "--ticks", "3", "--interval", "0.01")

    assert failures == []
    # The clock resumed from where it first took the lease, not from the moment the database came back.
    assert announced == [(sale.pk, "active")]
