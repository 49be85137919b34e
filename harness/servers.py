"""Run the real server (Daphne, flashsale.asgi) as a separate process against the test database."""

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from django.db import connection

from harness.redis_namespace import CACHE_KEY_PREFIX, CHANNEL_PREFIX

PROJECT_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """A DATABASE_URL for the database this test run uses (the test database, not the real one)."""
    conf = connection.settings_dict
    user = conf.get("USER") or ""
    password = f":{conf['PASSWORD']}" if conf.get("PASSWORD") else ""
    host = conf.get("HOST") or "127.0.0.1"
    port = conf.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{conf['NAME']}"


def server_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": test_database_url(),
            "DEBUG": "false",
            "SECRET_KEY": "test-server-secret-key-not-for-production-x7Qp2Lm9Zr4Tb8Kw1Vn6",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "RATELIMIT_ENABLE": "false",
            "REQUEST_LOG": "false",
            # The run's own Redis keys, never those of a server running beside the tests.
            "CACHE_KEY_PREFIX": CACHE_KEY_PREFIX,
            "CHANNEL_PREFIX": CHANNEL_PREFIX,
        }
    )
    env.pop("TEST_DATABASE_NAME", None)
    env.update(overrides)
    return env


def wait_until_healthy(base_url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {base_url} did not become healthy in {timeout}s")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within 10 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def daphne_server(**env_overrides: str):
    """Start `daphne flashsale.asgi:application` on a free port; yield its base URL; stop it."""
    port = free_port()
    process = subprocess.Popen(
        # Twisted's default listen backlog (50) resets connections under a herd; see README.
        [
            sys.executable,
            "-m",
            "daphne",
            "-e",
            f"tcp:port={port}:interface=127.0.0.1:backlog=1024",
            "flashsale.asgi:application",
        ],
        cwd=PROJECT_DIR,
        env=server_env(**env_overrides),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, process)
        yield base_url
    finally:
        stop(process)
