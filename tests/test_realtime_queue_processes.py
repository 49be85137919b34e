"""A waiting room across real processes: two Daphne processes and a `manage.py runsaleclock` share the
Redis channel layer; sockets on both see the line advance at most once a second, then closed by a
staff end made through one of them."""

import json
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import timedelta
from uuid import uuid4

import httpx
import pytest
from django.utils import timezone
from websockets.sync.client import connect

from harness.redis_namespace import scoped
from harness.servers import PROJECT_DIR, daphne_server, server_env, stop
from sales.models import FlashSale, QueuePlace
from tests.factories import SaleFactory, TokenFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_sockets_on_two_servers_see_the_clocks_line_once_a_second_then_closed_by_a_staff_end():
    sale = SaleFactory(waiting_room=True, admit_per_second=10, original_stock=500)
    for position in range(1, 201):
        QueuePlace.objects.create(sale=sale, user=UserFactory(), position=position)
    FlashSale.objects.filter(pk=sale.pk).update(queue_drawn_at=timezone.now() - timedelta(seconds=1))
    staff = TokenFactory(user=UserFactory(is_staff=True))
    shared = {"CHANNEL_PREFIX": scoped(f"line-{uuid4().hex[:8]}")}

    with daphne_server(**shared) as server_a, daphne_server(**shared) as server_b, ExitStack() as opened:
        sockets = [
            opened.enter_context(
                connect(f"{server.replace('http', 'ws')}/ws/sales/{sale.pk}/", origin=server, open_timeout=10)
            )
            for server in (server_a, server_b)
        ]
        snapshots = [json.loads(socket.recv(timeout=10)) for socket in sockets]
        clock = subprocess.Popen(
            [sys.executable, "manage.py", "runsaleclock", "--interval", "0.2"],
            cwd=PROJECT_DIR,
            env=server_env(**shared),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            lines: list[list[tuple[float, dict]]] = [[] for _ in sockets]
            # Four seconds from the clock's first announcement: a loaded machine can take longer than
            # that to start a Django process.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                for socket, seen in zip(sockets, lines, strict=True):
                    try:
                        message = json.loads(socket.recv(timeout=0.05))
                    except TimeoutError:
                        continue
                    if message["type"] == "queue_advanced":
                        if not any(lines):
                            deadline = time.monotonic() + 4
                        seen.append((time.monotonic(), message))
            ended = httpx.post(
                f"{server_b}/api/v1/flashsales/{sale.pk}/end",
                headers={"Authorization": f"Token {staff.key}"},
                timeout=10,
            )
            closed = []
            for socket in sockets:
                for _ in range(20):
                    message = json.loads(socket.recv(timeout=10))
                    if message["type"] == "queue_closed":
                        closed.append(message)
                        break
        finally:
            stop(clock)

    assert ended.status_code == 200, ended.text
    assert [snapshot["queueLength"] for snapshot in snapshots] == [200, 200]
    for seen in lines:
        arrivals = [at for at, _ in seen]
        through = [message["admittedThrough"] for _, message in seen]
        # About four seconds of admission at 10 a second: a figure a second, each further on.
        assert 2 <= len(seen) <= 5, through
        assert all(later - earlier >= 0.95 for earlier, later in zip(arrivals, arrivals[1:], strict=False))
        assert through == sorted(through) and len(set(through)) == len(through)
        assert {(m["saleId"], m["admitPerSecond"], m["queueLength"]) for _, m in seen} == {(sale.pk, 10, 200)}
    assert closed == [{"type": "queue_closed", "saleId": sale.pk, "reason": "ended"}] * 2
    assert FlashSale.objects.get(pk=sale.pk).admitted_through > 0
