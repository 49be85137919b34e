"""A flashsale cluster on one machine: real hosts in Linux network namespaces, joined by veth pairs.

    db      its own PostgreSQL cluster (initdb, as the postgres user) and redis-server, on db's address only
    app1    gunicorn (HTTP) + Daphne (WebSockets) + the sale clock: the production topology of one host
    app2    the same
    lb      HAProxy: HTTP to both gunicorns, /ws/ to both Daphnes, health checks on /api/v1/health/ready
    client  where load is driven from (harness/cluster_client.py)

Every host has one interface on a bridge that lives in a namespace of its own (the switch), so no
address of the machine's own network is touched and all traffic stays inside the namespaces. Needs
root and iproute2 (CI runs as root; .ci/run installs iproute2 and haproxy).

`Cluster` is a context manager; teardown also runs at interpreter exit and, for a run that died
without one, every namespace with PREFIX is removed (with the processes inside it) when a cluster
starts. Used by tests/test_cluster.py and reusable from bench/:

    with Cluster() as cluster:
        cluster.client("herd", ...)
"""

import atexit
import json
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from harness.faults import _pg_bin, wait_for

PROJECT_DIR = Path(__file__).resolve().parent.parent
# Overridable so that two runs on one machine (parallel worktrees) each get namespaces of their own.
PREFIX = os.environ.get("CLUSTER_NETNS_PREFIX", "fscl")
SUBNET = os.environ.get("CLUSTER_SUBNET", "10.213.47")
ADDRESSES = {
    "db": f"{SUBNET}.10",
    "app1": f"{SUBNET}.11",
    "app2": f"{SUBNET}.12",
    "lb": f"{SUBNET}.20",
    "client": f"{SUBNET}.30",
}
APP_HOSTS = ("app1", "app2")
HTTP_PORT, WS_PORT, LB_PORT = 8001, 8002, 8000
# A locally administered unicast address no interface has (see Cluster.cut_from_db).
NOWHERE = "02:00:00:00:fa:11"
SECRET_KEY = "cluster-test-secret-key-shared-by-every-app-host-" + "k" * 40
METRICS_TOKEN = "cluster-metrics-token"
# Health checks often enough that a dead or cut-off host is drained in about a second. Without
# `timeout check` a check must be answered within `inter` (300 ms): on a loaded machine a busy but
# healthy host missed that twice, was marked down, and `shutdown-sessions` cut every WebSocket it
# held, whose reconnects loaded it more (bench/ws_fanout_cluster.py: 150 of 300 watchers cut in one
# run). A dead host refuses the check's connection at once, so it is drained as fast as before.
HAPROXY_CONFIG = """
global
    maxconn {maxconn}
    stats socket {stats_socket} mode 600 level user
defaults
    mode http
    option forwardfor
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 60s
    timeout server 30s
    timeout tunnel 1h
    timeout check 2s
    default-server inter 300ms fall 2 rise 2 on-marked-down shutdown-sessions
frontend flashsale
    bind {lb}:{lb_port}
    acl is_websocket path_beg /ws/
    use_backend daphne if is_websocket
    default_backend gunicorn
backend gunicorn
    option httpchk
    http-check send meth GET uri /api/v1/health/ready
    server app1 {app1}:{http} check
    server app2 {app2}:{http} check
backend daphne
    balance leastconn
    option httpchk
    http-check send meth GET uri /api/v1/health/ready
    server app1 {app1}:{ws} check
    server app2 {app2}:{ws} check
"""


def run(*command: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=timeout)


def netns(host: str) -> str:
    return f"{PREFIX}-{host}"


def existing_namespaces() -> list[str]:
    listed = run("ip", "netns", "list", check=False).stdout.split("\n")
    return [line.split()[0] for line in listed if line.startswith(PREFIX + "-")]


def kill_processes_in(namespace: str) -> None:
    """SIGKILL every process inside one of the harness's namespaces (all of them were started by it)."""
    for pid in run("ip", "netns", "pids", namespace, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_namespaces() -> None:
    """Kill what runs in the harness's namespaces and delete them all, whatever fails on the way."""
    for namespace in existing_namespaces():
        kill_processes_in(namespace)
    for namespace in existing_namespaces():
        try:
            wait_for(
                lambda namespace=namespace: not run("ip", "netns", "pids", namespace, check=False).stdout.split(),
                10,
                f"the processes of {namespace} to exit",
            )
        except AssertionError:
            # Deleting the name still detaches the namespace; the kernel frees it with its last process.
            print(f"cluster teardown: processes of {namespace} outlived SIGKILL", file=sys.stderr)
        run("ip", "netns", "delete", namespace, check=False)


class Cluster:
    def __init__(
        self, workers: int = 2, threads: int = 4, settings: dict[str, str] | None = None, lb_processes: int = 1
    ):
        self.workers, self.threads = workers, threads
        # HAProxy processes on lb, all bound to one port (SO_REUSEPORT, HAProxy's default on Linux;
        # the kernel spreads connections over them): each proxied socket costs HAProxy two
        # descriptors, so one process holds at most about half the hard descriptor limit.
        self.lb_processes = lb_processes
        self.settings = settings or {}  # extra environment for every app host
        self.dir: Path | None = None
        self.processes: dict[str, list[subprocess.Popen]] = {}
        self.lb_url = f"http://{ADDRESSES['lb']}:{LB_PORT}"
        self.database_url = f"postgres://postgres@{ADDRESSES['db']}:5432/flashsale"
        self.redis_url = f"redis://{ADDRESSES['db']}:6379/0"

    # --- lifecycle --------------------------------------------------------------------------

    def __enter__(self):
        remove_namespaces()  # a previous run that died without tearing down
        atexit.register(self.close)
        # A plain SIGTERM (a timeout, a CI stop) skips atexit: turn it into SystemExit so that
        # the `with` block unwinds and tears down.
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            self.dir = Path(tempfile.mkdtemp(prefix="flashsale-cluster-"))
            self._network()
            self._database()
            self.start_redis()
            self.manage("app1", "migrate", "--noinput")
            for host in APP_HOSTS:
                self.start_app(host)
            self._load_balancer()
            for host in APP_HOSTS:
                self.wait_until_in_rotation(host)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        remove_namespaces()
        for processes in self.processes.values():
            for process in processes:
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        self.processes.clear()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # --- the network ------------------------------------------------------------------------

    def _network(self) -> None:
        switch = netns("sw")
        run("ip", "netns", "add", switch)
        run("ip", "-n", switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", switch, "link", "set", "br0", "up")
        for host, address in ADDRESSES.items():
            ns = netns(host)
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", host, "netns", switch)
            run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", switch, "link", "set", host, "master", "br0", "up")

    def cut_from_db(self, host: str) -> None:
        """Every packet between `host` and db vanishes on the wire, both ways, as with 100% loss on a
        partitioned link: nothing answers and nothing refuses, sends succeed locally, connects time
        out. lb still reaches `host`. Each side's neighbour entry for the other points at a MAC
        address nobody has, so frames leave and are dropped by every port of the switch.
        (`tc ... netem loss 100%` needs the sch_netem module, which this kernel lacks; a blackhole
        route makes a local connect fail at once with EINVAL, a refusal rather than silence.)"""
        for one, other in ((host, "db"), ("db", host)):
            nowhere = [ADDRESSES[other], "lladdr", NOWHERE, "dev", "eth0", "nud", "permanent"]
            run("ip", "-n", netns(one), "neigh", "replace", *nowhere)

    def reconnect_to_db(self, host: str) -> None:
        """Undo `cut_from_db`: the next packet resolves the real address again (ARP)."""
        for one, other in ((host, "db"), ("db", host)):
            run("ip", "-n", netns(one), "neigh", "del", ADDRESSES[other], "dev", "eth0", check=False)

    # --- processes ----------------------------------------------------------------------------

    def _popen(self, host: str, name: str, command: list[str], env: dict | None = None, user: str | None = None):
        log = open(self.dir / f"{host}-{name}.log", "ab")
        prefix = ["ip", "netns", "exec", netns(host)]
        if user:
            prefix += ["runuser", "-u", user, "--"]
        process = subprocess.Popen(prefix + command, cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.processes.setdefault(host, []).append(process)
        return process

    def log(self, host: str, name: str) -> str:
        path = self.dir / f"{host}-{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _database(self) -> None:
        pg_dir = self.dir / "pg"
        pg_dir.mkdir()
        postgres = pwd.getpwnam("postgres")
        os.chown(self.dir, postgres.pw_uid, postgres.pw_gid)
        os.chown(pg_dir, postgres.pw_uid, postgres.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
        run(
            *as_postgres,
            _pg_bin("initdb"),
            "-D",
            str(pg_dir / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        (pg_dir / "data" / "pg_hba.conf").write_text("local all all trust\nhost all all 0.0.0.0/0 trust\n")
        options = (
            f"-c listen_addresses={ADDRESSES['db']} -p 5432 -k {pg_dir} -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=200"
        )
        run(
            "ip",
            "netns",
            "exec",
            netns("db"),
            *as_postgres,
            _pg_bin("pg_ctl"),
            "-D",
            str(pg_dir / "data"),
            "-o",
            options,
            "-l",
            str(pg_dir / "log"),
            "-w",
            "start",
        )
        run(
            "ip",
            "netns",
            "exec",
            netns("db"),
            *as_postgres,
            _pg_bin("createdb"),
            "-h",
            ADDRESSES["db"],
            "-U",
            "postgres",
            "flashsale",
        )

    def start_redis(self) -> None:
        self._popen(
            "db",
            "redis",
            [
                "redis-server",
                "--bind",
                ADDRESSES["db"],
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
            ],
        )
        wait_for(
            lambda: self.in_ns("db", "redis-cli", "-h", ADDRESSES["db"], "ping", check=False).stdout.strip() == "PONG",
            10,
            "redis on db",
        )

    def restart_redis_empty(self) -> None:
        """Kill redis-server (it keeps nothing on disk) and start a fresh, empty one."""
        for process in self.processes.get("db", []):
            if process.args[-1] == "warning" and process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        self.processes["db"] = [p for p in self.processes.get("db", []) if p.poll() is None]
        self.start_redis()

    def app_env(self, host: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "REDIS_", "TEST_"))}
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            DEBUG="false",
            SECRET_KEY=SECRET_KEY,
            ALLOWED_HOSTS="*",
            RATELIMIT_ENABLE="false",
            REQUEST_LOG="false",
            METRICS_TOKEN=METRICS_TOKEN,
            WEB_CONCURRENCY=str(self.workers),
            GUNICORN_THREADS=str(self.threads),
            DB_POOL_MAX_SIZE="8",
            DB_POOL_MIN_SIZE="1",
            TRUSTED_CLIENT_IP_HEADER="HTTP_X_FORWARDED_FOR",
            # HAProxy runs on the lb host: its X-Forwarded-For is the one believed.
            TRUSTED_PROXIES=f"127.0.0.1,::1,{ADDRESSES['lb']}",
            PYTHONUNBUFFERED="1",
            PROMETHEUS_MULTIPROC_DIR=str(self.dir / f"metrics-{host}"),
            # A claim orphaned by a killed host is taken over after this long (30 s by default).
            IDEMPOTENCY_LOCK_SECONDS="4",
        )
        env.update(self.settings)
        Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(exist_ok=True)
        return env

    def start_app(self, host: str) -> None:
        """The production topology of one app host (deploy/run without HAProxy): gunicorn, Daphne, the clock."""
        address, env = ADDRESSES[host], self.app_env(host)
        metrics = Path(env["PROMETHEUS_MULTIPROC_DIR"])
        shutil.rmtree(metrics, ignore_errors=True)
        metrics.mkdir()
        python = sys.executable
        self.processes[host] = [p for p in self.processes.get(host, []) if p.poll() is None]
        self._popen(
            host,
            "gunicorn",
            [
                python,
                "-m",
                "gunicorn",
                "-c",
                "deploy/gunicorn.conf.py",
                "--bind",
                f"{address}:{HTTP_PORT}",
                "flashsale.wsgi:application",
            ],
            env,
        )
        self._popen(
            host,
            "daphne",
            [
                python,
                "-m",
                "daphne",
                "-e",
                f"tcp:port={WS_PORT}:interface={address}:backlog=1024",
                "flashsale.asgi:application",
            ],
            env,
        )
        self._popen(host, "clock", [python, "manage.py", "runsaleclock", "--interval", "0.25"], env)
        for port in (HTTP_PORT, WS_PORT):
            wait_for(
                lambda port=port: self.http_status(host, f"http://{address}:{port}/api/v1/health") == 200,
                60,
                f"{host}:{port} to answer",
            )

    def kill_app(self, host: str) -> None:
        """SIGKILL every process of an app host, as when the machine dies."""
        kill_processes_in(netns(host))
        for process in self.processes.get(host, []):
            process.wait(timeout=10)
        self.processes[host] = []

    def _load_balancer(self) -> None:
        config = self.dir / "haproxy.cfg"
        # Two descriptors per proxied connection, within the hard limit HAProxy inherits.
        maxconn = (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 1000) // 2
        config.write_text(
            HAPROXY_CONFIG.format(
                lb_port=LB_PORT,
                http=HTTP_PORT,
                ws=WS_PORT,
                maxconn=maxconn,
                stats_socket=self.dir / "haproxy.sock",
                **ADDRESSES,
            )
        )
        for n in range(self.lb_processes):
            self._popen("lb", f"haproxy{n or ''}", [shutil.which("haproxy"), "-db", "-f", str(config)])
        try:
            wait_for(lambda: self.http_status("client", f"{self.lb_url}/api/v1/health") == 200, 20, "haproxy")
        except AssertionError:
            probe = self.in_ns("client", "curl", "-sv", "-m", "2", f"{self.lb_url}/api/v1/health", check=False)
            raise AssertionError(f"haproxy does not answer:\n{self.log('lb', 'haproxy')}\n{probe.stderr}") from None

    # --- looking in -----------------------------------------------------------------------------

    def in_ns(self, host: str, *command: str, check: bool = True, timeout: float = 60, env=None):
        return subprocess.run(
            ["ip", "netns", "exec", netns(host), *command],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            env=env,
            cwd=PROJECT_DIR,
        )

    def http_status(self, host: str, url: str) -> int | None:
        result = self.in_ns(host, "curl", "-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}", url, check=False)
        return int(result.stdout) if result.stdout.strip().isdigit() and result.stdout != "000" else None

    def ready(self, host: str) -> int | None:
        """The readiness status host's gunicorn answers (asked from lb, as HAProxy does)."""
        return self.http_status("lb", f"http://{ADDRESSES[host]}:{HTTP_PORT}/api/v1/health/ready")

    def lb_status(self, host: str) -> dict[str, str]:
        """What HAProxy thinks of `host` in each backend, e.g. {"gunicorn": "UP", "daphne": "DOWN"}."""
        with socket.socket(socket.AF_UNIX) as stats:
            stats.settimeout(5)
            stats.connect(str(self.dir / "haproxy.sock"))
            stats.sendall(b"show stat\n")
            answer = b""
            while chunk := stats.recv(65536):
                answer += chunk
        header, *rows = answer.decode().strip().split("\n")
        rows = [dict(zip(header.lstrip("# ").split(","), row.split(","), strict=False)) for row in rows]
        return {row["pxname"]: row["status"] for row in rows if row["svname"] == host}

    def wait_until_in_rotation(self, host: str, timeout: float = 30) -> None:
        wait_for(lambda: self.ready(host) == 200, timeout, f"{host} to be ready")
        # rise 2 x inter 300 ms: HAProxy sends traffic once two checks in a row pass.
        wait_for(lambda: set(self.lb_status(host).values()) == {"UP"}, timeout, f"HAProxy to put {host} back")

    def manage(self, host: str, *args: str) -> str:
        result = self.in_ns(host, sys.executable, "manage.py", *args, env=self.app_env(host), check=False, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} on {host} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def client(self, *args: str, timeout: float = 180) -> dict:
        """Run harness/cluster_client.py on the client host; returns the JSON it prints."""
        result = self.in_ns(
            "client",
            sys.executable,
            "-m",
            "harness.cluster_client",
            *args,
            env=self.client_env(),
            check=False,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"cluster_client {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return json.loads(result.stdout.strip().splitlines()[-1])

    def client_process(self, *args: str) -> subprocess.Popen:
        """The same, in the background: stdout is a pipe the caller reads."""
        return subprocess.Popen(
            ["ip", "netns", "exec", netns("client"), sys.executable, "-m", "harness.cluster_client", *args],
            cwd=PROJECT_DIR,
            env=self.client_env(),
            stdout=subprocess.PIPE,
            stderr=open(self.dir / "client.log", "ab"),
            text=True,
        )

    def client_env(self) -> dict[str, str]:
        env = self.app_env("client")
        env["CLUSTER_LB_URL"] = self.lb_url
        return env
