"""Dependencies a fault test owns: a Redis server and a PostgreSQL cluster it can stop and start.

Each runs on a free loopback port in a temporary directory and is torn down by the context
manager, so a test never touches the machine's shared PostgreSQL (5432) or Redis (6379).
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from harness.servers import PROJECT_DIR, free_port, server_env, stop


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy; bounded by `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class RedisProcess:
    def __init__(self):
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, 10, f"redis on port {self.port}")

    def answers(self) -> bool:
        return (
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
            == "PONG"
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()  # a crash, not a clean shutdown
            self.process.wait(timeout=10)


@contextmanager
def redis_server():
    redis = RedisProcess()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return path


class PostgresCluster:
    """A throwaway cluster (initdb) run as the `postgres` OS user when the tests run as root."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.port = free_port()
        self.data = directory / "data"

    def _run(self, *args: str, check=True, timeout=60):
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=timeout)

    def init(self) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self) -> None:
        # Immediate: like a crash or a network cut, open connections die without a goodbye.
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        self._run(_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)


@contextmanager
def postgres_cluster():
    directory = Path(tempfile.mkdtemp(prefix="flashsale-pg-"))
    cluster = PostgresCluster(directory)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def manage(*args: str, **env: str) -> str:
    """Run `manage.py <args>` with the environment of a test server; returns stdout."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=server_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class ServerProcess:
    """A Daphne process the test may kill and restart on the same port."""

    def __init__(self, **env: str):
        self.port = free_port()
        self.env = env
        self.process: subprocess.Popen | None = None
        self.log = None
        self.base_url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # Output goes to a file, not a pipe nobody reads (a full pipe would block the server).
        self.log = tempfile.NamedTemporaryFile(prefix="flashsale-server-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-e",
                f"tcp:port={self.port}:interface=127.0.0.1:backlog=1024",
                "flashsale.asgi:application",
            ],
            cwd=PROJECT_DIR,
            env=server_env(**self.env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

        def healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.output()[-2000:]}")
            try:
                return httpx.get(f"{self.base_url}/api/v1/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 30, "the server to answer /api/v1/health")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive:
            stop(self.process)

    def cleanup(self) -> None:
        self.stop()
        if self.log is not None:
            self.log.close()
            Path(self.log.name).unlink(missing_ok=True)


@contextmanager
def server_process(**env: str):
    server = ServerProcess(**env)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
