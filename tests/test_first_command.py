"""The first command's topology: `./scripts/serve` runs gunicorn (pages, API) beside Daphne
(WebSockets), and a purchase made through gunicorn reaches a socket held by Daphne.

Started exactly as a newcomer starts it (the script itself, with SERVE_SKIP_SETUP because the test
prepares its own SQLite file), with no REDIS_URL (pushes read from the database) and with one.
"""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import httpx
import pytest
from websockets.sync.client import connect

from harness.servers import PROJECT_DIR, free_port

PASSWORD = "first-command-pass-1"


def service_env(sqlite_path, **overrides: str) -> dict[str, str]:
    """./scripts/serve's environment on `sqlite_path`, without the suite's DATABASE_URL and REDIS_URL."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "TEST_DATABASE_NAME", "CI"}
    }
    env.update(
        {
            "SQLITE_PATH": str(sqlite_path),
            "DEBUG": "false",
            "SECRET_KEY": "first-command-test-secret-key-not-for-production-x7Qp2Lm9Zr4T",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "RATELIMIT_ENABLE": "false",
            "REQUEST_LOG": "false",
            "WEB_CONCURRENCY": overrides.pop("WEB_CONCURRENCY", "1"),
            "GUNICORN_THREADS": "4",
        }
    )
    env.update(overrides)
    return env


def _free_port_pair() -> int:
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


def _wait_for(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"scripts/serve exited with {process.returncode}: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


@contextmanager
def first_command(env: dict[str, str]):
    """Run ./scripts/serve; yield (pages URL, sockets URL); stop every process it started."""
    port = _free_port_pair()
    env = {**env, "PORT": str(port), "SERVE_SKIP_SETUP": "1"}
    process = subprocess.Popen(
        [str(PROJECT_DIR / "scripts" / "serve")],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        pages, sockets = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
        _wait_for(f"{pages}/api/v1/health", process)
        _wait_for(f"{sockets}/api/v1/health", process)
        yield pages, sockets.replace("http", "ws")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def migrate(sqlite_path) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=PROJECT_DIR,
        env=service_env(sqlite_path),
        check=True,
    )


def insert_sale(sqlite_path, *, starts_in: timedelta, stock: int) -> int:
    """A sale row written straight into the service's database (as a staff edit would leave it)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    with sqlite3.connect(sqlite_path) as db:
        cursor = db.execute(
            "INSERT INTO sales_flashsale (name, start_time, end_time, original_stock, current_stock, version,"
            " created_at) VALUES (?, ?, ?, ?, ?, 1, ?)",
            ("Opening", str(now + starts_in), str(now + timedelta(hours=1)), stock, stock, str(now)),
        )
        return cursor.lastrowid


def _insert_buyers(sqlite_path, count: int) -> list[str]:
    """Buyers with tokens written straight into the database (signing up hashes a password each)."""
    now, keys = str(datetime.now(UTC).replace(tzinfo=None)), []
    with sqlite3.connect(sqlite_path) as db:
        for _ in range(count):
            user_id = db.execute(
                "INSERT INTO accounts_user (password, is_superuser, email, name, is_staff, is_active, date_joined)"
                " VALUES ('!', 0, ?, 'Buyer', 0, 1, ?)",
                (f"{uuid4().hex}@example.com", now),
            ).lastrowid
            keys.append(uuid4().hex[:40])
            db.execute("INSERT INTO authtoken_token (key, created, user_id) VALUES (?, ?, ?)", (keys[-1], now, user_id))
    return keys


def _receive_until(ws, kind: str) -> tuple[dict, list[dict]]:
    seen = []
    for _ in range(20):
        message = json.loads(ws.recv(timeout=20))
        if message["type"] == kind:
            return message, seen
        seen.append(message)
    raise AssertionError(f"no {kind!r} message among {seen}")


def _receive_status(ws, status: str) -> dict:
    """The first status message saying `status` (the database feed restates the status it first reads)."""
    for _ in range(20):
        message, _ = _receive_until(ws, "status")
        if message["status"] == status:
            return message
    raise AssertionError(f"no status {status!r}")


def sign_up(pages: str) -> str:
    account = {"name": "Grace", "email": f"grace-{uuid4().hex[:8]}@example.com", "password": PASSWORD}
    assert httpx.post(f"{pages}/api/v1/auth/register", json=account, timeout=10).status_code == 201
    login = httpx.post(f"{pages}/api/v1/auth/login", json={"email": account["email"], "password": PASSWORD}, timeout=10)
    return login.json()["data"]["token"]


def _a_sale_opens_and_a_purchase_through_gunicorn_is_pushed_by_daphne(sqlite_path, env):
    migrate(sqlite_path)
    with first_command(env) as (pages, sockets):
        page = httpx.get(f"{pages}/", timeout=10)
        token = sign_up(pages)
        sale_id = insert_sale(sqlite_path, starts_in=timedelta(seconds=3), stock=10)
        with connect(f"{sockets}/ws/sales/{sale_id}/", origin=pages, open_timeout=10) as ws:
            snapshot = json.loads(ws.recv(timeout=10))
            # The sale clock: nobody writes anything when the sale opens, the push says it did.
            opened = _receive_status(ws, "active")
            response = httpx.post(
                f"{pages}/api/v1/flashsales/purchase",
                json={"saleId": sale_id, "quantity": 2},
                headers={"Authorization": f"Token {token}"},
                timeout=10,
            )
            stock, before = _receive_until(ws, "stock")
            purchases = [message for message in before if message["type"] == "purchase"]
            if not purchases:
                purchases = [_receive_until(ws, "purchase")[0]]

    # The page names the sockets' port (Daphne's), not its own (gunicorn's).
    assert page.status_code == 200
    assert f'data-socket-port="{sockets.rsplit(":", 1)[1]}"' in page.text
    assert response.status_code == 201, response.text
    with sqlite3.connect(sqlite_path) as db:
        current, version = db.execute(
            "SELECT current_stock, stock_version FROM sales_flashsale WHERE id = ?", (sale_id,)
        ).fetchone()
        bought = db.execute("SELECT SUM(quantity) FROM sales_purchase WHERE sale_id = ?", (sale_id,)).fetchone()[0]
    assert (current, bought) == (8, 2)
    assert (snapshot["status"], opened["status"]) == ("pending", "active")
    assert stock == {"type": "stock", "saleId": sale_id, "currentStock": 8, "stockVersion": version}
    assert [(p["userName"], p["quantity"]) for p in purchases] == [("Grace", 2)]


def test_first_command_without_redis_pushes_purchases_and_sale_starts_read_from_the_database(tmp_path):
    _a_sale_opens_and_a_purchase_through_gunicorn_is_pushed_by_daphne(
        tmp_path / "first.sqlite3", service_env(tmp_path / "first.sqlite3")
    )


@pytest.mark.redis
def test_first_command_with_redis_pushes_purchases_and_sale_starts_through_the_channel_layer(tmp_path):
    run = uuid4().hex[:8]
    env = service_env(
        tmp_path / "first.sqlite3",
        REDIS_URL=os.environ["REDIS_URL"],
        WEB_CONCURRENCY="2",
        CHANNEL_PREFIX=f"test-first-{run}",
        CACHE_KEY_PREFIX=f"test-first-{run}",
    )
    _a_sale_opens_and_a_purchase_through_gunicorn_is_pushed_by_daphne(tmp_path / "first.sqlite3", env)


def test_a_herd_on_sqlite_through_several_gunicorn_processes_sells_the_stock_exactly_with_no_errors(tmp_path):
    # Several processes and threads writing one SQLite file at once: each purchase must wait for the
    # write lock (WAL, busy timeout, core/sqlite3's queue) instead of failing "database is locked".
    sqlite_path = tmp_path / "herd.sqlite3"
    migrate(sqlite_path)
    tokens = _insert_buyers(sqlite_path, 60)
    sale_id = insert_sale(sqlite_path, starts_in=timedelta(minutes=-1), stock=40)
    start = threading.Barrier(len(tokens))

    def buy(token: str) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            start.wait()
            return client.post(
                f"{pages}/api/v1/flashsales/purchase",
                json={"saleId": sale_id, "quantity": 1},
                headers={"Authorization": f"Token {token}"},
            )

    with first_command(service_env(sqlite_path, WEB_CONCURRENCY="2")) as (pages, _sockets):
        with ThreadPoolExecutor(len(tokens)) as pool:
            answers = list(pool.map(buy, tokens))

    statuses = [answer.status_code for answer in answers]
    refusals = {answer.json()["error"]["code"] for answer in answers if answer.status_code == 409}
    assert (statuses.count(201), statuses.count(409)) == (40, 20), statuses
    assert refusals == {"sold_out"}
    with sqlite3.connect(sqlite_path) as db:
        stock = db.execute("SELECT current_stock FROM sales_flashsale WHERE id = ?", (sale_id,)).fetchone()[0]
        sold, rows = db.execute(
            "SELECT SUM(quantity), COUNT(*) FROM sales_purchase WHERE sale_id = ?", (sale_id,)
        ).fetchone()
    assert (stock, sold, rows) == (0, 40, 40)
