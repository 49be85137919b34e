"""The sale clock runs on every app host, exactly one announces, and a killed leader hands over."""

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from websockets.sync.client import connect

from harness.faults import wait_for
from harness.servers import PROJECT_DIR, daphne_server, server_env, stop
from tests.factories import SaleFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

LONG_SECRET_KEY = "clock-failover-test-secret-key-" + "x" * 60


class Clock:
    """A `manage.py runsaleclock` process whose output lines are collected as they come."""

    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runsaleclock", "--interval", "0.2"],
            cwd=PROJECT_DIR,
            env=server_env(SECRET_KEY=LONG_SECRET_KEY, PYTHONUNBUFFERED="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def said(self, text: str) -> bool:
        return text in self.lines

    def stop(self):
        if self.process.poll() is None:
            stop(self.process)


def watch(base_url: str, sale_id: int, into: queue.Queue, stop: threading.Event) -> threading.Thread:
    """Collect every status message pushed to a socket on sale `sale_id` until `stop` is set."""
    opened = threading.Event()

    def run():
        with connect(f"{base_url.replace('http', 'ws')}/ws/sales/{sale_id}/", open_timeout=10) as socket:
            json.loads(socket.recv(timeout=10))  # the snapshot
            opened.set()
            while not stop.is_set():
                try:
                    message = json.loads(socket.recv(timeout=0.2))
                except TimeoutError:
                    continue
                if message["type"] == "status":
                    into.put(message)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert opened.wait(15), "socket did not open"
    return thread


def statuses(into: queue.Queue) -> list[str]:
    found = []
    while not into.empty():
        found.append(into.get()["status"])
    return found


def test_one_of_two_clocks_announces_and_a_killed_leader_hands_over_without_missing_a_start():
    now = timezone.now()
    # Starts while both clocks run; the second starts after the leader is killed.
    first = SaleFactory(start_time=now + timedelta(minutes=30), end_time=now + timedelta(hours=1))
    second = SaleFactory(start_time=now + timedelta(hours=1), end_time=now + timedelta(hours=2))
    first_statuses, second_statuses = queue.Queue(), queue.Queue()
    stop = threading.Event()
    clocks, watchers = [], []
    with daphne_server(SECRET_KEY=LONG_SECRET_KEY) as base_url:
        try:
            watchers += [
                watch(base_url, first.pk, first_statuses, stop),
                watch(base_url, second.pk, second_statuses, stop),
            ]
            clocks.append(Clock())
            wait_for(lambda: clocks[0].said("sale clock: leading"), 30, "the first clock to lead")
            clocks.append(Clock())
            wait_for(
                lambda: clocks[1].said("sale clock: standing by (another host's clock announces)"),
                30,
                "the second clock to stand by",
            )
            leader, follower = clocks

            # Both clocks tick across the first sale's start: it is announced exactly once. It is set
            # once both run (starting them can take longer than any fixed lead on a loaded machine).
            first.start_time = timezone.now() + timedelta(seconds=2)
            first.save(update_fields=["start_time"])
            wait_for(lambda: not first_statuses.empty(), 15, "the first sale's start")
            time.sleep(1)  # a second announcement, if any, would arrive within a couple of ticks
            assert statuses(first_statuses) == ["active"]

            # The second sale starts 0.5 s after the leader dies, before or while the follower takes over.
            second.start_time = timezone.now() + timedelta(seconds=0.5)
            second.save(update_fields=["start_time"])
            leader.process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            wait_for(lambda: follower.said("sale clock: leading"), 2, "the follower to take over within 2 s")
            assert time.monotonic() - killed_at <= 2

            wait_for(lambda: not second_statuses.empty(), 10, "the second sale's start")
            time.sleep(1)
            assert statuses(second_statuses) == ["active"]
            assert statuses(first_statuses) == []
            assert follower.process.poll() is None
        finally:
            stop.set()
            for clock in clocks:
                clock.stop()
    for thread in watchers:
        thread.join(timeout=5)
