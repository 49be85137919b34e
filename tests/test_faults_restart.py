"""A PostgreSQL restart, or a helper process that dies, does not take the stack down (issue 25, item 1).

The restart runs on a throwaway PostgreSQL cluster the test owns (harness/faults.py); the machine's
shared server is never restarted.
"""

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from harness.faults import manage, postgres_cluster, server_process, wait_for
from harness.servers import PROJECT_DIR, free_port, server_env, stop
from tests.test_clock_failover import statuses, watch

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


class ClockProcess:
    """`manage.py runsaleclock` on `env`'s database, its output lines collected as they come."""

    def __init__(self, **env: str):
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runsaleclock", "--interval", "0.2"],
            cwd=PROJECT_DIR,
            env=server_env(PYTHONUNBUFFERED="1", **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def count(self, text: str) -> int:
        return self.lines.count(text)

    def stop(self):
        if self.process.poll() is None:
            stop(self.process)


def test_the_sale_clock_keeps_announcing_across_a_database_restart():
    with postgres_cluster() as pg:
        pg.create_database("flashsale")
        env = {"DATABASE_URL": pg.url("flashsale"), "REDIS_URL": os.environ["REDIS_URL"]}
        manage("migrate", "--noinput", **env)
        sale_id = int(manage("createsale", "--name", "Restart", "--starts-in", "3600", **env))
        clock = ClockProcess(**env)
        try:
            wait_for(lambda: clock.count("sale clock: leading") == 1, 30, "the clock to lead")

            pg.stop()
            # Which it notices first depends on the moment: the lease's renewal (standing by) or
            # its tick (a failed query) lets the lease go.
            wait_for(
                lambda: (
                    clock.count("sale clock: standing by (another host's clock announces)") == 1
                    or clock.count("sale clock: the database is unavailable; retrying") >= 1
                ),
                30,
                "the clock to lose its lease with the database",
            )
            pg.start()
            # Back: the clock takes the lease again (a new session) and ticks on a new connection,
            # where it used to die on its stale one (OperationalError) and take deploy/run down.
            wait_for(
                lambda: clock.count("sale clock: leading") >= 2 or clock.process.poll() is not None,
                30,
                "the clock to lead again",
            )

            with server_process(**env) as daphne:
                announced, done = queue.Queue(), threading.Event()
                watcher = watch(daphne.base_url, sale_id, announced, done)
                try:
                    with psycopg.connect(pg.url("flashsale"), autocommit=True) as db:
                        db.execute(
                            "UPDATE sales_flashsale SET start_time = %s WHERE id = %s",
                            [datetime.now(UTC) + timedelta(seconds=1), sale_id],
                        )
                    try:
                        wait_for(
                            lambda: not announced.empty() or clock.process.poll() is not None,
                            # A clock that noticed the outage in its tick may still be in its back-off
                            # (up to 5 s) when the database is back.
                            30,
                            "the sale's start to be announced",
                        )
                    except AssertionError as missing:
                        raise AssertionError("\n".join([str(missing), "the clock's output:", *clock.lines])) from None
                    assert clock.process.poll() is None, "\n".join(clock.lines)
                    assert statuses(announced) == ["active"]
                finally:
                    done.set()
                    watcher.join(timeout=5)
            assert clock.process.poll() is None
        finally:
            clock.stop()


# --- the start script restarts a helper that dies ---------------------------------------------


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, with its command line (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found[child] = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            todo.append(child)
    return found


def clock_pids(script_pid: int) -> list[int]:
    return [
        pid for pid, command in descendants(script_pid).items() if "runsaleclock" in command and "python" in command
    ]


def free_port_run(count: int) -> int:
    """A port with the `count - 1` after it free too (deploy/run's backends follow its port)."""
    for _ in range(50):
        port = free_port()
        if port + count > 65535:
            continue
        try:
            for offset in range(1, count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports")


def script_env(script: str) -> tuple[dict[str, str], int]:
    if script == "scripts/serve":
        port = free_port_run(2)
        return server_env(PORT=str(port), SERVE_SKIP_SETUP="1", PYTHONUNBUFFERED="1"), port
    port = free_port_run(4)
    env = server_env(
        PORT=str(port),
        DEPLOY_SKIP_SETUP="1",
        DEPLOY_PLAIN_HTTP="1",
        WEB_CONCURRENCY="1",
        GUNICORN_THREADS="2",
        PYTHONUNBUFFERED="1",
    )
    # The tests' DEBUG=false would turn on deploy/env's HTTPS defaults without DEPLOY_PLAIN_HTTP.
    return env, port


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("script", ["scripts/serve", "deploy/run"])
def test_the_start_script_restarts_a_killed_sale_clock_while_health_keeps_answering(tmp_path, script):
    env, port = script_env(script)
    output = tmp_path / "script.log"
    with output.open("w") as log:
        process = subprocess.Popen(
            [str(PROJECT_DIR / script)],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    health = f"http://127.0.0.1:{port}/api/v1/health"

    def leading_clocks() -> int:
        return output.read_text().count("sale clock: leading")

    try:
        wait_for(lambda: _answers(health), 60, f"{script} to answer health")
        wait_for(lambda: leading_clocks() == 1, 30, "the sale clock to lead")
        first = clock_pids(process.pid)
        assert len(first) == 1

        os.kill(first[0], signal.SIGKILL)
        answers = []
        # The new clock takes the lease the killed one's session gave up, and ticks.
        wait_for(lambda: answers.append(_answers(health)) or leading_clocks() == 2, 30, "a new clock to lead")
        second = clock_pids(process.pid)

        assert len(second) == 1 and second != first
        assert process.poll() is None  # the stack is still up
        assert answers and all(answers)
        assert _answers(health)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
