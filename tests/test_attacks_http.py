"""Denial of service over HTTP by one client (issue 12, items 3-4): page floods, slow headers."""

import json
import os
import socket
import subprocess
import time
from contextlib import contextmanager

import httpx
import pytest
from django.test import Client
from websockets.sync.client import connect

from harness.servers import PROJECT_DIR, daphne_server, free_port, server_env, stop, wait_until_healthy
from sales.models import FlashSale
from tests.factories import SaleFactory

pytestmark = pytest.mark.django_db


def test_html_pages_are_rate_limited_per_client_address(settings):
    settings.RATELIMIT_PAGES = "2/d"
    sale = SaleFactory()
    browser = Client()

    statuses = [browser.get(f"/sales/{sale.pk}/").status_code for _ in range(2)]
    limited = browser.get("/")
    elsewhere = Client(REMOTE_ADDR="10.9.9.9").get("/")

    assert statuses == [200, 200]
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert int(limited["Retry-After"]) >= 1
    assert elsewhere.status_code == 200
    assert FlashSale.objects.get(pk=sale.pk).version == sale.version


def test_pages_and_api_are_counted_apart(settings):
    settings.RATELIMIT_PAGES = "1/d"
    settings.RATELIMIT_GLOBAL = "1/d"
    client = Client()

    assert (client.get("/").status_code, client.get("/api/v1/leaderboard").status_code) == (200, 200)
    assert (client.get("/").status_code, client.get("/api/v1/leaderboard").status_code) == (429, 429)


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/health/ready", "/api/v1/health/ready/"])
def test_health_probes_are_never_limited(settings, path):
    settings.RATELIMIT_GLOBAL = "1/d"
    client = Client()

    assert [client.get(path).status_code for _ in range(3)] in ([200] * 3, [503] * 3)


@pytest.mark.parametrize("path", ["/api/v1/healthz", "/api/v1/health/", "/api/v1/health/ready/more"])
def test_paths_that_only_start_like_health_are_limited(settings, path):
    settings.RATELIMIT_GLOBAL = "2/d"
    client = Client()

    statuses = [client.get(path).status_code for _ in range(3)]

    assert statuses == [404, 404, 429]


# --- slow headers (slowloris), against real servers -----------------------------------------

PARTIAL_REQUEST = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@contextmanager
def running(command: list[str], env: dict[str, str], health_url: str):
    process = subprocess.Popen(command, cwd=PROJECT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_healthy(health_url, process)
        yield process
    finally:
        stop(process)


@contextmanager
def gunicorn_server(**env_overrides: str):
    """deploy/gunicorn.conf.py serving flashsale.wsgi on a free port (one worker, two threads)."""
    port = free_port()
    env = server_env(WEB_CONCURRENCY="1", GUNICORN_THREADS="2", **env_overrides)
    command = [
        str(PROJECT_DIR / ".venv/bin/gunicorn"),
        "-c",
        "deploy/gunicorn.conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        "flashsale.wsgi:application",
    ]
    with running(command, env, f"http://127.0.0.1:{port}"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def haproxy_front(gunicorn_url: str, daphne_url: str):
    """deploy/haproxy.cfg in front of the given servers, as deploy/run starts it."""
    port = free_port()
    env = dict(
        os.environ,
        HAPROXY_BIND=f"127.0.0.1:{port}",
        GUNICORN_ADDR=gunicorn_url.removeprefix("http://"),
        DAPHNE_ADDR_1=daphne_url.removeprefix("http://"),
        DAPHNE_ADDR_2=daphne_url.removeprefix("http://"),
        GUNICORN_MAXCONN="2",
        DAPHNE_MAXCONN="100",
        HAPROXY_MAXCONN="2000",
        API_MAX_BODY_BYTES="8192",
    )
    # haproxy is a Debian package (deploy/run needs it too; .ci/run installs it).
    with running(["haproxy", "-db", "-f", "deploy/haproxy.cfg"], env, f"http://127.0.0.1:{port}"):
        yield f"http://127.0.0.1:{port}"


def hold_partial_requests(base_url: str, count: int) -> list[socket.socket]:
    host, port = base_url.removeprefix("http://").split(":")
    held = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(PARTIAL_REQUEST)
        held.append(sock)
    return held


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server ends the connection (EOF or reset) within the bound, reading what it sends."""
    sock.settimeout(30)  # a bound, not a measurement: the timeouts under test are a few seconds
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        sock.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_gunicorn_closes_connections_whose_headers_stop_and_keeps_answering_health():
    with gunicorn_server(GUNICORN_READ_TIMEOUT="2") as base_url:
        # Three times its threads: without a read timeout these held every thread for good.
        held = hold_partial_requests(base_url, 6)
        health = httpx.get(f"{base_url}/api/v1/health", timeout=30)
        closed = [closed_by_server(sock) for sock in held]

    assert health.status_code == 200
    assert closed == [True] * 6


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_haproxy_drops_hundreds_of_slow_header_connections_while_health_answers():
    with (
        daphne_server() as daphne_url,
        gunicorn_server() as gunicorn_url,
        haproxy_front(gunicorn_url, daphne_url) as base_url,
    ):
        held = hold_partial_requests(base_url, 300)
        health = [httpx.get(f"{base_url}/api/v1/health", timeout=10).status_code for _ in range(5)]
        first_reply = held[0].recv(64)  # HAProxy answers a late request with 408
        closed = [closed_by_server(sock) for sock in held]

    assert health == [200] * 5
    assert first_reply.startswith(b"HTTP/1.1 408")
    assert closed == [True] * 300


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_daphne_drops_stalled_headers_but_keeps_idle_websockets_open():
    with daphne_server(DAPHNE_IDLE_TIMEOUT="2") as base_url:
        held = hold_partial_requests(base_url, 200)
        health = httpx.get(f"{base_url}/api/v1/health", timeout=30)
        ws_url = base_url.replace("http://", "ws://") + "/ws/sales/active/"
        with connect(ws_url, open_timeout=10) as socket_:
            socket_.recv(timeout=10)  # the snapshot
            time.sleep(4)  # twice the timeout, silent on both sides
            socket_.send(json.dumps({"type": "ping"}))
            still_open = json.loads(socket_.recv(timeout=10))
        closed = [closed_by_server(sock) for sock in held]

    assert health.status_code == 200
    assert closed == [True] * 200
    assert still_open["type"] == "pong"
