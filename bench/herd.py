#!/usr/bin/env python3
"""The thundering-herd benchmark: one command, one table of ratios measured in the same run.

    .venv/bin/python bench/herd.py                   # the production topology (deploy/run)
    .venv/bin/python bench/herd.py --topology serve  # what ./scripts/serve runs (gunicorn + Daphne)

It needs PostgreSQL and Redis on loopback (as CI has them), wrk and haproxy (Debian packages;
installed with apt-get when missing and running as root) and pgbench. It recreates its own database
(`flashsale_bench` by default), flushes its own Redis database (db 5 by default), starts the
service the way docs/performance.md "Performance" deploys it on free loopback ports, seeds users, tokens and
sales, drives load from wrk (a separate process), then drives the framework-free floor
(bench/floor_wsgi.py: the same transaction in a bare WSGI function under the same gunicorn
settings) the same way, runs pgbench with the purchase's transaction shape, checks the stock
invariants and the join phase's places (a waiting-room sale joined by every connection at once) and
prints the service, the floor and pgbench side by side. Results also go to bench/results/.
Everything is bounded: about 11 x --duration seconds of load plus setup (8 x with --no-floor), then
it stops by itself.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
BENCH_DIR = PROJECT_DIR / "bench"
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = PROJECT_DIR / ".venv" / "bin"
PURCHASE_PATH = "/api/v1/flashsales/purchase"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--topology",
        choices=["haproxy", "serve", "daphne", "gunicorn"],
        default="haproxy",
        help="haproxy: deploy/run (HAProxy -> gunicorn + Daphne), the default deployment; "
        "serve: ./scripts/serve (gunicorn for HTTP beside one Daphne, no proxy; with the "
        "bench's PostgreSQL and Redis); daphne: one Daphne process (the first command "
        "before gunicorn); gunicorn: gunicorn alone, no proxy",
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the framework-free floor (bench/floor_wsgi.py) phases"
    )
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per measured phase")
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument(
        "--join-users",
        type=int,
        default=20000,
        help="buyers of the join phase (users of their own, one token each): enough that every join in "
        "the window is a first join (201), none a repeat",
    )
    parser.add_argument(
        "--cold-join-tokens",
        action="store_true",
        help="leave the joiners' tokens out of the cache (by default they are cached just before the join "
        "phase, as the live page's first read of its place caches a buyer's token before they join)",
    )
    parser.add_argument(
        "--herd-stock",
        type=int,
        default=0,
        help="units of the measured herd sale; default users x cap, so it lasts the window",
    )
    parser.add_argument("--sellout-stock", type=int, default=1000, help="units of the sale sold out before phase 3")
    parser.add_argument(
        "--server",
        choices=["gunicorn", "granian"],
        default="gunicorn",
        help="the WSGI server of --topology gunicorn and of the floor: gunicorn (deploy/gunicorn.conf.py) or "
        "granian's WSGI mode with the same workers, threads and backlog (granian must be importable, "
        "e.g. PYTHONPATH=<pip install --target dir>)",
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--gunicorn-threads", type=int, default=8, help="threads per gunicorn worker (1: sync workers)")
    parser.add_argument("--pgbench-clients", type=int, default=20)
    parser.add_argument(
        "--request-log",
        choices=["true", "false"],
        default="true",
        help="REQUEST_LOG of the servers (one JSON line per request, to /dev/null)",
    )
    parser.add_argument("--database", default="flashsale_bench")
    parser.add_argument(
        "--pg",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL (no database); the bench owns --database on it",
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/5", help="flushed at the start: use a spare db")
    parser.add_argument("--label", default="", help="free text stored in the JSON result")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the servers' Python processes with py-spy during every measured phase (py-spy on PATH, "
        "or PY_SPY=<path>; e.g. pip install --target /tmp/py-spy-lib py-spy): shares of the GIL's holder by "
        "library per phase in the JSON result, collapsed stacks beside it. Sampling costs CPU: take figures from a run "
        "without it",
    )
    return parser.parse_args()


# --- environment ---------------------------------------------------------------------------


def need_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {package} (apt-get)...", flush=True)
        apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        # A new machine has empty package lists: without the update the install finds nothing.
        subprocess.run(["apt-get", "update", "-qq"], check=False, stdout=subprocess.DEVNULL, env=apt_env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", package], check=False, stdout=subprocess.DEVNULL, env=apt_env
        )
        path = shutil.which(name)
    if not path:
        sys.exit(f"bench/herd.py needs `{name}`: apt-get install {package}")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free loopback ports."""
    for _ in range(50):
        base = free_port()
        ports = range(base, base + count)
        try:
            for port in ports:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no run of free ports")


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


def prepare_database(args) -> str:
    host = re.sub(r"^postgres(ql)?://", "", args.pg)
    user_host, _, port = host.rpartition(":")
    user, _, hostname = user_host.rpartition("@")
    pg = ["-h", hostname, "-p", port or "5432", "-U", user or "postgres"]
    if subprocess.run(["pg_isready", "-q", *pg[:4]]).returncode != 0:
        sys.exit("PostgreSQL is not reachable; start it as .ci/run does")
    if subprocess.run(["redis-cli", "-u", args.redis, "ping"], capture_output=True).returncode != 0:
        sys.exit("Redis is not reachable; start it as .ci/run does")
    # Only the bench's own database and Redis db are reset.
    run(["dropdb", "--if-exists", "--force", *pg, args.database])
    run(["createdb", *pg, args.database])
    run(["redis-cli", "-u", args.redis, "flushdb"], stdout=subprocess.DEVNULL)
    args.pg_cli = pg
    return f"{args.pg}/{args.database}"


def server_env(args, database_url: str) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": args.redis,
            "DEBUG": "false",
            "SECRET_KEY": "bench-secret-key-not-for-production-x7Qp2Lm9Zr4Tb8Kw1Vn6Yd3",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # Every wrk connection comes from 127.0.0.1: per-IP limits would measure the limiter.
            "RATELIMIT_ENABLE": "false",
            # ws_fanout.py opens a thousand sockets from 127.0.0.1.
            "WS_MAX_SOCKETS_PER_ADDRESS": "0",
            "REQUEST_LOG": args.request_log,
            # Plain HTTP on loopback: no TLS proxy in front of deploy/run (deploy/env).
            "DEPLOY_PLAIN_HTTP": "1",
            "WEB_CONCURRENCY": str(args.workers),
            "GUNICORN_THREADS": str(args.gunicorn_threads),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("TEST_DATABASE_NAME", None)
    env.pop("CI", None)
    return env


def start_servers(args, env: dict, topology: str) -> tuple[subprocess.Popen, str]:
    """Start `topology` (one of --topology's, or "floor") in its own process group; return it and
    the base URL."""
    log = open(RESULTS_DIR / f"server-{topology}-{datetime.now(UTC):%Y%m%dT%H%M%S}.log", "w")
    if topology == "haproxy":
        port = free_port_run(4)
        env = {**env, "PORT": str(port), "BACKEND_PORT_BASE": str(port + 1)}
        # The bench migrated its database itself; the sale clock has nothing to do in a bench.
        env.update({"DEPLOY_SKIP_SETUP": "1", "DEPLOY_NO_CLOCK": "1"})
        cmd = [str(PROJECT_DIR / "deploy" / "run")]
    elif topology == "serve":
        port = free_port_run(2)
        # Pages and API on PORT (what wrk drives), Daphne on PORT+1. The bench migrated and seeded.
        env = {**env, "PORT": str(port), "WEBSOCKET_PORT": str(port + 1), "SERVE_SKIP_SETUP": "1"}
        cmd = [str(PROJECT_DIR / "scripts" / "serve")]
    elif topology in ("floor", "gunicorn"):
        port = free_port()
        # The floor runs under the same gunicorn settings (workers, threads, backlog) as the service.
        app = "bench.floor_wsgi:application" if topology == "floor" else "flashsale.wsgi:application"
        cmd = [str(VENV_BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", app]
        if args.server == "granian":
            # Issue 20.5: the same app, workers, threads and backlog under granian's WSGI mode.
            cmd = [
                *(str(VENV_BIN / "python"), "-m", "granian", "--interface", "wsgi", "--http", "1", "--no-ws"),
                *("--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)),
                *("--blocking-threads", str(args.gunicorn_threads), "--backlog", "2048", app),
            ]
    else:
        port = free_port()
        cmd = [
            str(VENV_BIN / "daphne"),
            "-e",
            f"tcp:port={port}:interface=127.0.0.1:backlog=1024",
            "flashsale.asgi:application",
        ]
    # The request log goes nowhere: its cost is the formatting, not a terminal.
    # Without the request log, stdout carries only warnings and errors: keep them.
    stdout = subprocess.DEVNULL if env.get("REQUEST_LOG") != "false" else log
    process = subprocess.Popen(cmd, cwd=PROJECT_DIR, env=env, stdout=stdout, stderr=log, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server exited with {process.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"{base_url}/api/v1/health", timeout=1) as answer:
                if answer.status == 200:
                    return process, base_url
        except OSError:
            pass
        time.sleep(0.2)
    stop_servers(process)
    sys.exit(f"server did not become healthy; see {log.name}")


def drain(base_url: str) -> float:
    """Wait until the server has worked off what the last phase left queued; return the seconds.

    When wrk stops, requests it had sent are still queued in the server (accept backlog, worker
    queues) and would be served during the next phase. One health request queues behind them.
    """
    started = time.monotonic()
    try:
        urllib.request.urlopen(f"{base_url}/api/v1/health", timeout=120).read()
    except OSError:
        pass
    return time.monotonic() - started


def sell_out_rest(sale_id: int, tokens_file: Path) -> int:
    """Buy what a too-short sell-out herd left, through the same purchase rule, user after user."""
    from rest_framework.authtoken.models import Token

    from sales import purchase
    from sales.exceptions import SalesError
    from sales.models import FlashSale

    bought = 0
    keys = tokens_file.read_text().split()
    users = {t.key: t.user for t in Token.objects.select_related("user").filter(key__in=keys)}
    for key in keys:
        if FlashSale.objects.get(pk=sale_id).current_stock == 0:
            break
        try:
            purchase.purchase(user=users[key], sale_id=sale_id, quantity=1)
            bought += 1
        except SalesError:
            pass
    return bought


def stop_servers(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def server_pids(process: subprocess.Popen) -> list[int]:
    """Our server processes: the process group we started (deploy/run's children included)."""
    pgid = process.pid
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / ticks


# --- where the servers' CPU goes (--profile) -------------------------------------------------

# What a sample's innermost frame from one of these belongs to, the first match in this order (a
# JSON dump inside DRF's renderer counts as json, a socket write inside gunicorn as gunicorn). py-spy
# names a frame's file by its path below sys.path: "redis/connection.py", "sales/fastpath.py".
PROJECT_PACKAGES = ("core/", "sales/", "accounts/", "live/", "idempotency/", "flashsale/", "leaderboard/", "bench/")
PROFILE_LIBRARIES = [
    ("redis-py", ("redis/", "channels_redis/", "msgpack/")),
    ("psycopg", ("psycopg/", "psycopg_pool/")),
    ("logging", ("logging/", "core/logging.py")),
    ("json", ("json/",)),
    ("DRF", ("rest_framework/",)),
    ("Django", ("django/",)),
    ("gunicorn", ("gunicorn/",)),
    ("Daphne, Twisted", ("daphne/", "twisted/", "autobahn/", "channels/")),
    ("this project", PROJECT_PACKAGES),
    ("threads, sockets, selectors", ("threading.py", "socket.py", "selectors.py", "queue.py", "asyncio/")),
]


def frame_file(frame: str) -> str:
    """ "Class.method (package/module.py:123)" -> "package/module.py" """
    inside = frame.rpartition(" (")[2]
    return inside.rpartition(":")[0] if inside.endswith(")") else ""


def stack_shares(files: list[Path]) -> dict:
    """Samples of the thread holding the GIL (py-spy --gil: the process's Python CPU) by library (the
    innermost frame that names one) and by the file of the innermost frame, over every process's
    collapsed stacks."""
    libraries: dict[str, int] = {}
    innermost: dict[str, int] = {}
    total = 0
    for out in files:
        if not out.exists():
            continue
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            paths = [frame_file(frame) for frame in stack.split(";")[1:]]  # [0] names the thread
            library = next(
                (name for path in reversed(paths) for name, prefixes in PROFILE_LIBRARIES if path.startswith(prefixes)),
                "other (C, the interpreter, the standard library)",
            )
            libraries[library] = libraries.get(library, 0) + int(count)
            if paths:
                innermost[paths[-1]] = innermost.get(paths[-1], 0) + int(count)
            total += int(count)

    def shares(counts: dict[str, int], top: int) -> dict[str, float]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return {name: round(n / total, 3) for name, n in ranked}

    return (
        {"samples": total, "shares": shares(libraries, 20), "innermost_files": shares(innermost, 15)} if total else {}
    )


def python_pids(pids: list[int]) -> list[int]:
    """The server processes that run Python (HAProxy does not)."""
    found = []
    for pid in pids:
        try:
            if b"python" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def start_sampling(args, pids: list[int], phase: str, base_url: str) -> list[tuple[subprocess.Popen, Path]]:
    py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if not py_spy:
        raise SystemExit("--profile needs py-spy on PATH or PY_SPY=<path> (pip install --target DIR py-spy)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    samplers = []
    for pid in python_pids(pids):
        out = RESULTS_DIR / f"stacks-{phase}-{stamp}-{pid}.txt"
        command = [py_spy, "record", "--pid", str(pid), "--duration", str(args.duration), "--rate", "100"]
        command += ["--format", "raw", "--nonblocking", "--gil", "--threads", "--output", str(out)]
        samplers.append((subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out))
    return samplers


def finish_sampling(samplers: list[tuple[subprocess.Popen, Path]]) -> dict:
    for process, _ in samplers:
        process.wait(timeout=120)
    return stack_shares([out for _, out in samplers])


# --- Django side: seeding and checks (this process talks to the bench database directly) ----


def setup_django(database_url: str, redis_url: str) -> None:
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DEBUG": "false",
            "SECRET_KEY": "bench-secret-key-not-for-production-x7Qp2Lm9Zr4Tb8Kw1Vn6Yd3",
            "REQUEST_LOG": "false",
            "DJANGO_SETTINGS_MODULE": "flashsale.settings",
        }
    )
    os.environ.pop("TEST_DATABASE_NAME", None)
    sys.path.insert(0, str(PROJECT_DIR))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def seed(args, tokens_file: Path) -> dict:
    from django.contrib.auth.hashers import make_password
    from rest_framework.authtoken.models import Token

    from accounts.models import User
    from sales.models import FlashSale

    password = make_password("bench-password-123")
    users = User.objects.bulk_create(
        User(email=f"buyer{i}@bench.example", name=f"Buyer {i}", password=password) for i in range(args.users)
    )
    tokens = Token.objects.bulk_create(Token(user=user, key=Token.generate_key()) for user in users)
    tokens_file.write_text("\n".join(token.key for token in tokens) + "\n")
    # The join phase's buyers: none of them has a place before it, so each join is a first one.
    joiners = User.objects.bulk_create(
        User(email=f"joiner{i}@bench.example", name=f"Joiner {i}", password=password) for i in range(args.join_users)
    )
    join_tokens = Token.objects.bulk_create(Token(user=user, key=Token.generate_key()) for user in joiners)
    join_tokens_file(tokens_file).write_text("\n".join(token.key for token in join_tokens) + "\n")
    # The shop's payment back end confirms the hold phase's purchases with a staff token.
    staff = User.objects.create(email="payments@bench.example", name="Payments", password=password, is_staff=True)
    staff_token = Token.objects.create(user=staff, key=Token.generate_key()).key
    now = datetime.now(UTC)
    live = {"start_time": now - timedelta(minutes=1), "end_time": now + timedelta(hours=1)}

    def sale(name, stock, hold_seconds=0, **window):
        return FlashSale.objects.create(
            name=name, original_stock=stock, current_stock=stock, hold_seconds=hold_seconds, **(window or live)
        )

    from django.conf import settings

    from sales import queue

    cap = settings.MAX_UNITS_PER_USER
    herd_stock = args.herd_stock or args.users * cap
    # A live waiting-room sale whose (empty) line the sale clock has drawn, as it does at the start:
    # from then on each join takes the next position in its own INSERT.
    join_sale = FlashSale.objects.create(
        name="waiting room", original_stock=1000, current_stock=1000, waiting_room=True, **live
    )
    queue.number_places()
    return {
        "cap": cap,
        "user_ids": (users[0].pk, users[-1].pk),
        "herd": sale("herd", herd_stock).pk,
        # Holds longer than the run, so every unconfirmed one is still held when the invariant is checked.
        "hold": sale("hold", herd_stock, hold_seconds=3600).pk,
        "staff_token": staff_token,
        "floor_herd": sale("floor herd", herd_stock).pk,
        "sellout": sale("sell-out", args.sellout_stock).pk,
        "pending": sale("pending", 1000, start_time=now + timedelta(hours=1), end_time=now + timedelta(hours=2)).pk,
        "join": join_sale.pk,
        "pgbench": sale("pgbench", 1_000_000_000).pk,
        # The bucket run takes stock from bench_stock_bucket rows; this sale only owns its purchase rows.
        "pgbench_buckets": sale("pgbench-buckets", 1).pk,
    }


def cache_tokens(tokens_file: Path) -> None:
    """Cache the tokens' users as the service's token authentication does after a token's first
    request: a buyer's live page reads their place when it loads (GET .../queue), before they join."""
    from django.conf import settings
    from django.core.cache import cache
    from rest_framework.authtoken.models import Token

    from accounts.authentication import cache_entry_for, token_cache_key

    keys = tokens_file.read_text().split()
    for start in range(0, len(keys), 1000):
        tokens = Token.objects.select_related("user").filter(key__in=keys[start : start + 1000])
        cache.set_many(
            {token_cache_key(token.key): cache_entry_for(token.user) for token in tokens},
            timeout=settings.AUTH_TOKEN_CACHE_SECONDS,
        )


def join_tokens_file(tokens_file: Path) -> Path:
    return tokens_file.with_name("join-tokens.txt")


def join_report(sale_id: int, phase: dict, join_users: int) -> dict:
    """Whether the join phase's places are right: one per buyer, as many as the 201s wrk received
    plus at most the requests it left unanswered when it stopped (the server still served them), and
    positions 1..n, each given once (the joins numbered themselves; no twin request leaves a gap), and
    nothing left for the sale clock's numbering step."""
    from django.db.models import Count

    from sales import queue
    from sales.models import QueuePlace

    places = QueuePlace.objects.filter(sale_id=sale_id)
    count = places.count()
    users = places.values("user_id").distinct().count()
    twice = places.values("user_id").annotate(n=Count("id")).filter(n__gt=1).count()
    foreign = places.exclude(user__email__startswith="joiner").count()
    created = phase["counts"].get("201", 0)
    unanswered = max(0, phase["sent"] - phase["requests"])
    started = time.perf_counter()
    numbered = queue.number_places()
    number_seconds = time.perf_counter() - started
    positions = sorted(places.values_list("position", flat=True))
    return {
        "places": count,
        "distinct_users": users,
        "users_with_two_places": twice,
        "places_of_other_users": foreign,
        "answered_201": created,
        "answered_200": phase["counts"].get("200", 0),
        "unanswered_at_stop": unanswered,
        "first_joins_only": created + phase["counts"].get("200", 0) <= join_users,
        "places_ok": users == count and twice == 0 and foreign == 0 and created <= count <= created + unanswered,
        "numbered": numbered,
        "number_step_s": number_seconds,
        "positions_ok": positions == list(range(1, count + 1)) and numbered == 0,
    }


def sale_report(sale_id: int, cap: int | None) -> dict:
    from django.db.models import Max, Min, Sum

    from sales.models import FlashSale, Purchase

    sale = FlashSale.objects.get(pk=sale_id)
    purchases = Purchase.objects.filter(sale_id=sale_id)
    agg = purchases.aggregate(units=Sum("quantity"), first=Min("created_at"), last=Max("created_at"))
    units = agg["units"] or 0
    top_user = purchases.values("user_id").annotate(units=Sum("quantity")).order_by("-units").first()
    report = {
        "original": sale.original_stock,
        "current": sale.current_stock,
        "sold_units": units,
        "purchases": purchases.count(),
        "stock_invariant_ok": sale.original_stock - sale.current_stock == units,
        "max_units_one_user": top_user["units"] if top_user else 0,
    }
    if cap is not None:
        report["cap_ok"] = report["max_units_one_user"] <= cap
    if agg["first"] and agg["last"] and agg["last"] > agg["first"]:
        report["selling_seconds"] = (agg["last"] - agg["first"]).total_seconds()
    return report


# --- load ----------------------------------------------------------------------------------


def wrk(args, url: str, *script_args: str, duration: int | None = None, connections: int | None = None) -> dict:
    cmd = [
        "wrk",
        "-t",
        str(args.threads),
        "-c",
        str(connections or args.connections),
        "-d",
        f"{duration or args.duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(BENCH_DIR / "herd.lua"),
        url,
        "--",
        *script_args,
    ]
    output = subprocess.run(cmd, capture_output=True, text=True, timeout=(duration or args.duration) + 30).stdout
    line = next((row for row in output.splitlines() if row.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    result = json.loads(line[len("WRKJSON ") :])
    seconds = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / seconds
    result["p50_ms"], result["p99_ms"] = result["p50_us"] / 1000, result["p99_us"] / 1000
    result["successes"] = result["counts"].get("201", 0)
    result["success_rps"] = result["successes"] / seconds
    result["errors_5xx"] = sum(v for k, v in result["counts"].items() if k.startswith("5"))
    result["ok_2xx"] = sum(v for k, v in result["counts"].items() if k.startswith("2"))
    result["ok_rps"] = result["ok_2xx"] / seconds
    return result


PGBENCH_ONE_ROW = """\
\\set uid random({umin}, {umax})
BEGIN;
UPDATE sales_flashsale SET current_stock = current_stock - 1, version = version + 1
  WHERE id = {sale} AND start_time <= now() AND end_time > now() AND current_stock >= 1;
SELECT current_stock, version, COALESCE((SELECT SUM(quantity) FROM sales_purchase
  WHERE sale_id = {sale} AND user_id = :uid), 0) FROM sales_flashsale WHERE id = {sale};
INSERT INTO sales_purchase (user_id, sale_id, quantity, created_at) VALUES (:uid, {sale}, 1, now());
END;
"""

# The same transaction with a pg_notify carrying the new stock, as a push through PostgreSQL would
# send it (issue 20.1's candidate): every notifying commit takes the server's NOTIFY queue lock.
PGBENCH_NOTIFY = PGBENCH_ONE_ROW.replace(
    "END;",
    "SELECT pg_notify('sale_events', (SELECT current_stock FROM sales_flashsale WHERE id = {sale})::text);\nEND;",
)

PGBENCH_BUCKETS = """\
\\set uid random({umin}, {umax})
\\set bucket random(1, 8)
BEGIN;
UPDATE bench_stock_bucket SET stock = stock - 1 WHERE id = :bucket AND stock >= 1;
SELECT stock, COALESCE((SELECT SUM(quantity) FROM sales_purchase
  WHERE sale_id = {sale} AND user_id = :uid), 0) FROM bench_stock_bucket WHERE id = :bucket;
INSERT INTO sales_purchase (user_id, sale_id, quantity, created_at) VALUES (:uid, {sale}, 1, now());
END;
"""


def pgbench(args, script: str, seeded: dict, workdir: Path, sale: str) -> dict:
    path = workdir / "pgbench.sql"
    umin, umax = seeded["user_ids"]
    path.write_text(script.format(umin=umin, umax=umax, sale=seeded[sale]))
    cmd = [
        "pgbench",
        *args.pg_cli,
        "-n",
        "-c",
        str(args.pgbench_clients),
        "-j",
        "2",
        "-T",
        str(args.duration),
        "-f",
        str(path),
        args.database,
    ]
    output = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60).stdout
    tps = re.search(r"tps = ([0-9.]+)", output)
    latency = re.search(r"latency average = ([0-9.]+) ms", output)
    if not tps:
        raise RuntimeError(f"pgbench failed:\n{output}")
    return {"tps": float(tps.group(1)), "latency_avg_ms": float(latency.group(1)) if latency else None}


# --- the run -------------------------------------------------------------------------------


def measure_phase(args, phases: dict, name: str, base_url: str, pids: list[int], url: str, *script_args, **kw):
    """One wrk phase against the server at `base_url`, stored in `phases[name]`."""
    samplers = start_sampling(args, pids, name, base_url) if args.profile else []
    cpu_before = cpu_seconds(pids)
    window_start = datetime.now(UTC)
    result = wrk(args, url, *script_args, **kw)
    window_end = datetime.now(UTC)
    result["server_cpu_s"] = cpu_seconds(pids) - cpu_before
    if samplers:
        result["profile"] = finish_sampling(samplers)
    result["drain_s"] = drain(base_url)
    if script_args[0] in {"purchase", "hold"}:
        # Commits inside the load window, from the database: wrk only counts answers it
        # received before it stopped, not purchases still queued in the server.
        from sales.models import Purchase

        committed = Purchase.objects.filter(
            sale_id=int(script_args[2]), created_at__gte=window_start, created_at__lt=window_end
        ).count()
        result["committed_in_window"] = committed
        result["committed_per_s"] = committed / (window_end - window_start).total_seconds()
        if script_args[0] == "hold":
            confirmed = Purchase.objects.filter(
                sale_id=int(script_args[2]), confirmed_at__gte=window_start, confirmed_at__lt=window_end
            ).count()
            result["confirmed_in_window"] = confirmed
            result["confirmed_per_s"] = confirmed / (window_end - window_start).total_seconds()
    phases[name] = result
    print(f"  {name}: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms, {result['counts']}", flush=True)
    if "profile" in result:
        shares = ", ".join(f"{library} {share:.0%}" for library, share in result["profile"]["shares"].items())
        print(f"    GIL samples {result['profile']['samples']}: {shares}", flush=True)
    return result


def measure_floor(args, database_url: str, seeded: dict, tokens_file: Path) -> dict:
    """The framework-free floor (bench/floor_wsgi.py) under the same gunicorn settings and load."""
    # The same per-user cap as the service's settings.
    env = {**server_env(args, database_url), "MAX_UNITS_PER_USER": str(seeded["cap"])}
    process, base_url = start_servers(args, env, "floor")
    pids = server_pids(process)
    purchase_url = base_url + PURCHASE_PATH
    phases = {}
    try:
        print(f"floor (bench/floor_wsgi.py) at {base_url}, {len(pids)} server processes", flush=True)
        wrk(args, base_url + "/api/v1/health", "get", duration=2, connections=50)
        measure_phase(args, phases, "trivial", base_url, pids, base_url + "/api/v1/health", "get")
        measure_phase(
            args, phases, "herd", base_url, pids, purchase_url, "purchase", str(tokens_file), str(seeded["floor_herd"])
        )
        # The service's sell-out sale, sold out by now: the floor refuses from the database.
        measure_phase(
            args,
            phases,
            "after_sellout",
            base_url,
            pids,
            purchase_url,
            "purchase",
            str(tokens_file),
            str(seeded["sellout"]),
        )
    finally:
        stop_servers(process)
    return phases


def main() -> int:
    args = parse_args()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    need_tool("wrk", "wrk")
    need_tool("pgbench", "postgresql-client")
    if args.topology == "haproxy":
        need_tool("haproxy", "haproxy")
    started = time.monotonic()
    database_url = prepare_database(args)
    setup_django(database_url, args.redis)
    workdir = Path(tempfile.mkdtemp(prefix="flashsale-bench-"))
    tokens_file = workdir / "tokens.txt"
    seeded = seed(args, tokens_file)
    cap = seeded["cap"]

    process, base_url = start_servers(args, server_env(args, database_url), args.topology)
    pids = server_pids(process)
    purchase_url = base_url + PURCHASE_PATH
    join_url = f"{base_url}/api/v1/flashsales/{seeded['join']}/queue"
    phases = {}
    try:
        print(
            f"topology {args.topology} at {base_url}, {len(pids)} server processes; "
            f"{args.connections} connections, {args.duration}s per phase",
            flush=True,
        )
        # A short warm-up so every worker has imported, connected and cached before measuring.
        wrk(args, base_url + "/api/v1/health", "get", duration=2, connections=50)

        def measure(name, url, *script_args, **kw):
            return measure_phase(args, phases, name, base_url, pids, url, *script_args, **kw)

        measure("trivial", base_url + "/api/v1/health", "get")
        # The waiting room's herd: every connection joins at once, each request a different buyer.
        if not args.cold_join_tokens:
            cache_tokens(join_tokens_file(tokens_file))
        measure("join", join_url, "join", str(join_tokens_file(tokens_file)), str(seeded["join"]), str(args.threads))
        measure("herd", purchase_url, "purchase", str(tokens_file), str(seeded["herd"]))
        # Holds: every buyer purchases, then the payment back end confirms (POST .../confirm).
        measure("hold", purchase_url, "hold", str(tokens_file), str(seeded["hold"]), seeded["staff_token"])
        # The real herd: a 1000-unit sale bought by every connection at once, for a bounded time.
        sellout_herd = wrk(
            args, purchase_url, "purchase", str(tokens_file), str(seeded["sellout"]), duration=args.duration
        )
        sellout_herd["drain_s"] = drain(base_url)
        phases["sellout_herd"] = sellout_herd
        left = sale_report(seeded["sellout"], cap)["current"]
        sellout_herd["left_after_herd"] = left
        if left:
            print(f"  sell-out herd left {left} units; buying them through sales.purchase.purchase", flush=True)
            sell_out_rest(seeded["sellout"], tokens_file)
        measure("after_sellout", purchase_url, "purchase", str(tokens_file), str(seeded["sellout"]))
        measure("before_start", purchase_url, "purchase", str(tokens_file), str(seeded["pending"]))
    finally:
        stop_servers(process)
    floor = {} if args.no_floor else measure_floor(args, database_url, seeded, tokens_file)

    print("  pgbench (same UPDATE + SELECT + INSERT, one hot row, with pg_notify, 8 bucket rows)...", flush=True)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_stock_bucket (id int PRIMARY KEY, stock bigint NOT NULL CHECK (stock >= 0))")
        cursor.execute("INSERT INTO bench_stock_bucket SELECT g, 1000000000 FROM generate_series(1, 8) g")
    pg_one = pgbench(args, PGBENCH_ONE_ROW, seeded, workdir, "pgbench")
    pg_notify = pgbench(args, PGBENCH_NOTIFY, seeded, workdir, "pgbench")
    pg_buckets = pgbench(args, PGBENCH_BUCKETS, seeded, workdir, "pgbench_buckets")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 8000000000::bigint - SUM(stock) FROM bench_stock_bucket")
        bucket_units_taken = cursor.fetchone()[0]

    checks = {name: sale_report(seeded[name], cap) for name in ("herd", "hold", "sellout", "pending", "floor_herd")}
    joins = join_report(seeded["join"], phases["join"], args.join_users)
    checks["pgbench"] = sale_report(seeded["pgbench"], None)
    bucket_rows = sale_report(seeded["pgbench_buckets"], None)
    checks["pgbench_buckets"] = {
        **bucket_rows,
        "original": 8 * 1_000_000_000,
        "current": 8 * 1_000_000_000 - bucket_units_taken,
        "stock_invariant_ok": bucket_units_taken == bucket_rows["sold_units"],
    }
    shutil.rmtree(workdir, ignore_errors=True)

    trivial = phases["trivial"]
    herd = phases["herd"]

    def ratio(a, b):
        return a / b if b else float("nan")

    rows = [
        ("trivial GET /api/v1/health", trivial["rps"], None, trivial, 1.0, 1.0),
        (
            "purchase herd, stock lasting",
            herd["rps"],
            herd["committed_per_s"],
            herd,
            ratio(herd["rps"], trivial["rps"]),
            ratio(herd["p99_ms"], trivial["p99_ms"]),
        ),
        (
            "purchase after sell-out",
            phases["after_sellout"]["rps"],
            None,
            phases["after_sellout"],
            ratio(phases["after_sellout"]["rps"], trivial["rps"]),
            ratio(phases["after_sellout"]["p99_ms"], trivial["p99_ms"]),
        ),
        (
            "purchase before start",
            phases["before_start"]["rps"],
            None,
            phases["before_start"],
            ratio(phases["before_start"]["rps"], trivial["rps"]),
            ratio(phases["before_start"]["p99_ms"], trivial["p99_ms"]),
        ),
    ]
    # Issue 20's targets. The old "herd p99 <= 3x trivial p99" compared a serialised row with an
    # endpoint that waits for nothing, which no server can meet; the floor's herd p99 replaced it.
    join = phases["join"]
    targets = {
        "joins_vs_trivial >= 0.9": ratio(join["ok_rps"], trivial["rps"]) >= 0.9,
        "join_p99_vs_trivial_p99 <= 3.0": ratio(join["p99_ms"], trivial["p99_ms"]) <= 3.0,
        "join_no_5xx": join["errors_5xx"] == 0,
        "herd_success_vs_pgbench >= 0.6": ratio(herd["committed_per_s"], pg_one["tps"]) >= 0.6,
        "after_sellout_vs_trivial >= 0.9": ratio(phases["after_sellout"]["rps"], trivial["rps"]) >= 0.9,
        "before_start_vs_trivial >= 0.9": ratio(phases["before_start"]["rps"], trivial["rps"]) >= 0.9,
    }
    if floor:
        floor_commits = floor["herd"]["committed_per_s"]
        floor_refusals = floor["after_sellout"]["rps"]
        targets["herd_commits_vs_floor >= 1.0"] = ratio(herd["committed_per_s"], floor_commits) >= 1.0
        targets["herd_p99_vs_floor_herd_p99 <= 1.0"] = ratio(herd["p99_ms"], floor["herd"]["p99_ms"]) <= 1.0
        targets["after_sellout_vs_floor_refusals >= 1.0"] = ratio(phases["after_sellout"]["rps"], floor_refusals) >= 1.0
        targets["before_start_vs_floor_refusals >= 1.0"] = ratio(phases["before_start"]["rps"], floor_refusals) >= 1.0
        targets["trivial_vs_floor_trivial >= 0.5"] = ratio(trivial["rps"], floor["trivial"]["rps"]) >= 0.5
    invariants_ok = (
        all(c["stock_invariant_ok"] for c in checks.values())
        and all(c.get("cap_ok", True) for c in checks.values())
        and joins["places_ok"]
        and joins["positions_ok"]
    )
    no_5xx = all(p["errors_5xx"] == 0 for p in [*phases.values(), *floor.values()])

    print()
    print(
        f"flashsale herd benchmark - topology {args.topology}, {args.connections} connections, "
        f"{args.users} users, {args.duration}s per phase, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'phase':32} {'req/s':>8} {'commit/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'x trivial':>10} {'p99 x':>7}  responses"
    )
    for name, rps, ok, res, r, p99r in rows:
        ok_text = f"{ok:8.0f}" if ok is not None else f"{'':8}"
        print(
            f"{name:32} {rps:8.0f} {ok_text} {res['p50_ms']:8.1f} {res['p99_ms']:8.1f} {r:10.2f} {p99r:7.2f}  "
            f"{res['counts']}"
        )
    sh = phases["sellout_herd"]
    sold_in_herd = args.sellout_stock - sh["left_after_herd"]
    print(
        f"{'sell-out herd (' + str(args.sellout_stock) + ' units)':32} {sh['rps']:8.0f} {sh['success_rps']:8.0f} "
        f"{sh['p50_ms']:8.1f} {sh['p99_ms']:8.1f} {ratio(sh['rps'], trivial['rps']):10.2f} "
        f"{ratio(sh['p99_ms'], trivial['p99_ms']):7.2f}  "
        + (
            f"sold out within the {args.duration}s window"
            if not sh["left_after_herd"]
            else f"{sold_in_herd} sold in {args.duration}s, {sh['left_after_herd']} left (then bought directly)"
        )
    )
    print(
        f"{'join the waiting room':32} {join['ok_rps']:8.0f} {join['success_rps']:8.0f} "
        f"{join['p50_ms']:8.1f} {join['p99_ms']:8.1f} {ratio(join['ok_rps'], trivial['rps']):10.2f} "
        f"{ratio(join['p99_ms'], trivial['p99_ms']):7.2f}  {join['counts']} (commit/s: first joins, 201; "
        f"tokens {'not cached' if args.cold_join_tokens else 'cached'})"
    )
    hold = phases["hold"]
    print(
        f"{'hold: purchase, then confirm':32} {hold['rps']:8.0f} {hold['committed_per_s']:8.0f} "
        f"{hold['p50_ms']:8.1f} {hold['p99_ms']:8.1f} {ratio(hold['rps'], trivial['rps']):10.2f} "
        f"{ratio(hold['p99_ms'], trivial['p99_ms']):7.2f}  confirms/s {hold['confirmed_per_s']:.0f} "
        f"beside commits/s {hold['committed_per_s']:.0f} (plain herd {herd['committed_per_s']:.0f})"
    )
    print(
        f"{'pgbench one hot row':32} {pg_one['tps']:8.0f} tx/s   herd ok/s vs it: "
        f"{ratio(herd['committed_per_s'], pg_one['tps']):.2f}"
    )
    print(
        f"{'pgbench one row + pg_notify':32} {pg_notify['tps']:8.0f} tx/s   vs one hot row: "
        f"{ratio(pg_notify['tps'], pg_one['tps']):.2f}"
    )
    print(
        f"{'pgbench 8 bucket rows':32} {pg_buckets['tps']:8.0f} tx/s   herd ok/s vs it: "
        f"{ratio(herd['committed_per_s'], pg_buckets['tps']):.2f}"
    )
    print_side_by_side(args, phases, floor, pg_one)
    print()
    for name, check in checks.items():
        cap_text = (
            f", max units of one user {check['max_units_one_user']}"
            f" (cap {cap}: {'ok' if check['cap_ok'] else 'VIOLATED'})"
            if "cap_ok" in check
            else ""
        )
        print(
            f"sale {name:8}: original {check['original']} - current {check['current']} = "
            f"{check['original'] - check['current']} == sum of quantities {check['sold_units']}: "
            f"{'ok' if check['stock_invariant_ok'] else 'VIOLATED'}{cap_text}"
        )
    print(
        f"sale join    : {joins['places']} places for {joins['distinct_users']} buyers, "
        f"{joins['users_with_two_places']} with two, {joins['places_of_other_users']} of other users; "
        f"201s received {joins['answered_201']}, unanswered at wrk's stop {joins['unanswered_at_stop']} "
        f"(places within 201s..201s+unanswered: {'ok' if joins['places_ok'] else 'VIOLATED'}); "
        f"positions 1..n, each once, {joins['numbered']} left to the clock's numbering step "
        f"({joins['number_step_s'] * 1000:.0f} ms): {'ok' if joins['positions_ok'] else 'VIOLATED'}"
        + ("" if joins["first_joins_only"] else "; some joins were repeats (raise --join-users)")
    )
    print(f"5xx responses: {sum(p['errors_5xx'] for p in [*phases.values(), *floor.values()])}")
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'NOT met'}")

    result = {
        "when": datetime.now(UTC).isoformat(),
        "label": args.label,
        "args": {k: v for k, v in vars(args).items() if k != "pg_cli"},
        "load_average_1m": os.getloadavg()[0],
        "phases": phases,
        "floor": floor,
        "pgbench": {"one_row": pg_one, "one_row_notify": pg_notify, "buckets_8": pg_buckets},
        "checks": checks,
        "joins": joins,
        "targets": targets,
        "invariants_ok": invariants_ok,
        "no_5xx": no_5xx,
        "elapsed_s": time.monotonic() - started,
    }
    out = RESULTS_DIR / f"herd-{args.topology}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nresults: {out.relative_to(PROJECT_DIR)} ({result['elapsed_s']:.0f}s)")
    return 0 if invariants_ok and no_5xx else 1


def print_side_by_side(args, phases: dict, floor: dict, pg_one: dict) -> None:
    """The service, the framework-free floor and pgbench on one table (the issue's comparison)."""

    def cell(value, fmt="8.0f"):
        return f"{value:{fmt}}" if value is not None else f"{'-':>8}"

    def of(source, phase, key):
        return source.get(phase, {}).get(key)

    print()
    print(
        f"side by side, same run      {'service':>8} {'floor':>8} {'pgbench':>8}  service/floor  "
        f"(service: --topology {args.topology}; floor: bench/floor_wsgi.py, same gunicorn settings)"
    )
    rows = [
        ("trivial GET req/s", of(phases, "trivial", "rps"), of(floor, "trivial", "rps"), None),
        ("trivial GET p99 ms", of(phases, "trivial", "p99_ms"), of(floor, "trivial", "p99_ms"), None),
        (
            "herd committed purchases/s",
            of(phases, "herd", "committed_per_s"),
            of(floor, "herd", "committed_per_s"),
            pg_one["tps"],
        ),
        ("herd p99 ms", of(phases, "herd", "p99_ms"), of(floor, "herd", "p99_ms"), None),
        ("refusals after sell-out/s", of(phases, "after_sellout", "rps"), of(floor, "after_sellout", "rps"), None),
    ]
    for name, service, floor_value, pg in rows:
        versus = f"{service / floor_value:13.2f}" if service is not None and floor_value else f"{'-':>13}"
        print(f"{name:27} {cell(service)} {cell(floor_value)} {cell(pg)}  {versus}")


if __name__ == "__main__":
    sys.exit(main())
