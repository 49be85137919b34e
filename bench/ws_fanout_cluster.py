#!/usr/bin/env python3
"""WebSocket fan-out across the cluster (harness/cluster.py): N watchers over both app hosts' Daphnes.

    sudo .venv/bin/python bench/ws_fanout_cluster.py                    # 1 watcher, then 10,000
    sudo .venv/bin/python bench/ws_fanout_cluster.py --watchers 2000    # a short smoke run

The single-host benchmark is bench/ws_fanout.py. This one lays out db, app1, app2, lb and client in
network namespaces (root; set CLUSTER_NETNS_PREFIX / CLUSTER_SUBNET to run beside another cluster)
and, per run:

1. a buyers process on the client host creates a sale (stock twice the burst) and its buyers;
2. --client-processes watcher processes on the client host open the watchers through lb on
   ws/sales/<id>/ (HAProxy, `balance leastconn` over app1's and app2's Daphne). They behave like the
   page: no protocol pings of their own (they answer Daphne's), an application ping every 25 s, and
   after a close they reconnect with the page's backoff (0.5 s doubling to 15 s, with jitter). They
   speak WebSocket through a minimal client of their own (MinimalWebSocket, below), not the
   websockets library: on these shared cores the measuring instrument's CPU is taken from the
   servers it measures;
3. with every watcher open, the Daphne processes' RSS and descriptors are read again;
4. the burst: --burst keyed one-unit purchases through lb from 40 concurrent clients;
5. every watcher must then show the database's final stock. The figure is the time from the last
   purchase's commit (its own timestamp, `created_at`, taken in the transaction) to the moment the
   last watcher received that stock (wall clocks of one machine), measured by the watcher
   processes, so it includes their own lag on cores they share with everything else.

Memory per socket is each Daphne process's RSS growth from just before the watchers connect to
when all are open, divided by the WebSockets it gained (established on its port, `ss`). It
includes whatever the handshakes left allocated. Each process's descriptors are printed too.

Why several processes: the hard descriptor limit here is 20,000 (`ulimit -Hn`; raising it needs
CAP_SYS_RESOURCE). A watcher process holds one descriptor per socket, so 10,000 watchers are spread
over several; HAProxy holds two per proxied socket, so lb runs --lb-processes HAProxy processes on
the same port (the kernel spreads connections over them, SO_REUSEPORT). One client address stands
for thousands of browsers, so the per-address socket cap (`WS_MAX_SOCKETS_PER_ADDRESS`) is lifted
for the run; the connect rate limit is off with every other rate limit (harness/cluster.py sets
`RATELIMIT_ENABLE=false`).
"""

import argparse
import asyncio
import base64
import json
import os
import queue
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

PING_SECONDS = 25  # what the page sends (sales/static/sales/live.js)
CONNECT_DEADLINE = 300
FINAL_DEADLINE = 30


def raise_descriptor_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the client host's processes ---------------------------------------------------------------


class Watcher:
    __slots__ = ("stock", "at", "opened")

    def __init__(self):
        self.stock = None  # the newest stock shown
        self.at = 0.0  # time.time() it was first shown
        self.opened = 0


class HandshakeRefused(Exception):
    pass


class MinimalWebSocket(asyncio.Protocol):
    """The client side of RFC 6455, only as far as a watcher needs it: the upgrade, unfragmented
    unmasked frames from the server (text, ping, close), masked frames to it (text, pong, close).

    The bench's own cost per message is work on the two cores the servers it measures run on: the
    websockets library spent about as much CPU per received message as Daphne did sending it.
    Text frames that carry no stock (purchases) are skipped without being decoded.
    """

    def __init__(self, watcher: "Watcher", host: str, path: str):
        self.watcher, self.request = watcher, self._upgrade(host, path)
        self.opened = asyncio.get_running_loop().create_future()
        self.opened.add_done_callback(lambda opened: opened.cancelled() or opened.exception())  # retrieved
        self.closed = asyncio.get_running_loop().create_future()
        self.buffer = bytearray()
        self.transport = None
        self.close_code = None

    @staticmethod
    def _upgrade(host: str, path: str) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        return (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.opened.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[: self.buffer.find(b"\r\n")]).split()
            del self.buffer[: end + 4]
            if status[1:2] != [b"101"]:
                self.opened.set_exception(HandshakeRefused(status[1].decode() if len(status) > 1 else "?"))
                self.transport.close()
                return
            self.opened.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buffer, at = self.buffer, 0
        while len(buffer) - at >= 2:
            opcode, length, header = buffer[at] & 0x0F, buffer[at + 1] & 0x7F, 2
            if length == 126:
                length, header = int.from_bytes(buffer[at + 2 : at + 4], "big"), 4
            elif length == 127:
                length, header = int.from_bytes(buffer[at + 2 : at + 10], "big"), 10
            if len(buffer) - at < header + length:
                break
            payload = buffer[at + header : at + header + length]
            at += header + length
            if opcode == 1:
                if b'"currentStock"' in payload:
                    stock = json.loads(payload)["currentStock"]
                    if stock != self.watcher.stock:
                        self.watcher.stock, self.watcher.at = stock, time.time()
            elif opcode == 9:  # Daphne's keepalive ping
                self._send(10, bytes(payload))
            elif opcode == 8:
                self.close_code = int.from_bytes(payload[:2], "big") if length >= 2 else 1005
                self._send(8, bytes(payload[:2]))
                self.transport.close()
        del buffer[:at]

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport.is_closing():
            return
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)  # payloads < 126

    def send_text(self, text: str) -> None:
        self._send(1, text.encode())

    def connection_lost(self, exc) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionResetError("closed during the upgrade"))
        if not self.closed.done():
            self.closed.set_result(None)


async def watch_one(url, watcher, connecting, stop, closes, refused):
    """One page: connect, watch until the socket closes, reconnect with the page's backoff."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    backoff = 0.5
    while not stop.is_set():
        socket = MinimalWebSocket(watcher, parts.netloc, parts.path)
        try:
            async with connecting:
                await loop.create_connection(lambda socket=socket: socket, parts.hostname, parts.port)
                await asyncio.wait_for(asyncio.shield(socket.opened), 30)
        except (OSError, TimeoutError, HandshakeRefused) as error:
            refused[str(error) if isinstance(error, HandshakeRefused) else type(error).__name__] += 1
            if socket.transport is not None:
                socket.transport.close()
            await asyncio.sleep(backoff * random.uniform(0.5, 1))
            backoff = min(backoff * 2, 15)
            continue
        watcher.opened += 1
        backoff = 0.5
        pinger = asyncio.create_task(ping_every(socket))
        try:
            await socket.closed
        finally:
            pinger.cancel()
            socket.transport.close()
        if not stop.is_set():
            closes[str(socket.close_code or "no close frame")] += 1
            await asyncio.sleep(backoff * random.uniform(0.5, 1))


async def ping_every(socket: MinimalWebSocket):
    await asyncio.sleep(random.uniform(0, PING_SECONDS))
    while True:
        socket.send_text('{"type":"ping"}')
        await asyncio.sleep(PING_SECONDS)


async def watchers_main(args) -> None:
    """Open --count watchers; print "connected N"; then, told "final STOCK", wait for every watcher
    to show it and print one JSON line."""
    loop = asyncio.get_running_loop()
    watchers = [Watcher() for _ in range(args.count)]
    stop, closes, refused = asyncio.Event(), Counter(), Counter()
    connecting = asyncio.Semaphore(args.connect_concurrency)
    # Referenced until the end: the event loop holds tasks only weakly.
    _tasks = [asyncio.create_task(watch_one(args.url, w, connecting, stop, closes, refused)) for w in watchers]
    started = time.monotonic()
    while any(w.stock is None for w in watchers) and time.monotonic() - started < CONNECT_DEADLINE:
        await asyncio.sleep(0.1)
    print(f"connected {sum(1 for w in watchers if w.stock is not None)} {time.monotonic() - started:.1f}", flush=True)
    command = (await loop.run_in_executor(None, sys.stdin.readline)).split()
    final = int(command[1])
    deadline = time.monotonic() + FINAL_DEADLINE
    while any(w.stock != final for w in watchers) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # each watcher notes when the stock reached it
    showing = [w for w in watchers if w.stock == final]
    result = {
        "watchers": len(watchers),
        "showing_final": len(showing),
        "last_shown_at": max((w.at for w in showing), default=None),
        "others_show": dict(Counter(str(w.stock) for w in watchers if w.stock != final)),
        "reconnected": sum(1 for w in watchers if w.opened > 1),
        "closes": dict(closes),
        "refused_handshakes": dict(refused),
    }
    print(json.dumps(result), flush=True)
    stop.set()
    await loop.run_in_executor(None, sys.stdin.readline)  # running while the orchestrator reads CPU times
    # Leave as a closed browser does: the kernel closes every socket at once (cancelling thousands
    # of tasks one by one once took the process longer than the run waits for it).
    os._exit(0)


def buyers_main(args) -> None:
    """Create the sale and buyers, print "sale ID", wait for "go", run the burst, print one JSON line."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings")
    django.setup()
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the project logs to stdout, where results go
    from django.db.models import Max

    from harness.cluster_client import buy, check, setup
    from sales.models import Purchase

    users = -(-args.burst // args.per_user)
    sale, tokens = setup(stock=2 * args.burst, users=users)
    print(f"sale {sale.pk}", flush=True)
    sys.stdin.readline()
    lb = os.environ["CLUSTER_LB_URL"]
    attempts = [(token, f"{token[:8]}-{n}") for n in range(args.per_user) for token in tokens][: args.burst]

    async def burst():
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=40), timeout=10) as client:
            gate = asyncio.Semaphore(40)

            async def one(token, key):
                async with gate:
                    return await buy(client, lb, token, key, sale.pk, lambda: None)

            return await asyncio.gather(*(one(token, key) for token, key in attempts))

    started = time.time()
    results = asyncio.run(burst())
    last_answer = time.time()
    from django.db import connection

    connection.close()
    summary = check(sale, tokens, results)
    last_commit = Purchase.objects.filter(sale=sale).aggregate(last=Max("created_at"))["last"]
    summary.update(
        statuses=dict(Counter(str(r["status"]) for r in results)),
        burst_seconds=round(last_answer - started, 2),
        burst_started=started,
        last_answer=last_answer,
        last_commit=last_commit.timestamp() if last_commit else None,
    )
    print(json.dumps(summary), flush=True)
    sys.stdin.readline()  # still running when the orchestrator reads the processes' CPU time


# --- the orchestrator (root, outside the namespaces) ---------------------------------------------


class Lines:
    """A child process's stdout, line by line, readable with a timeout."""

    def __init__(self, process: subprocess.Popen):
        self.process, self.queue = process, queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stdout:
            self.queue.put(line.strip())
        self.queue.put(None)

    def next(self, timeout: float) -> str:
        line = self.queue.get(timeout=timeout)
        if line is None:
            raise RuntimeError(f"{self.process.args[4:7]} exited with {self.process.wait()}")
        return line

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()


def on_client(cluster, *args: str) -> Lines:
    from harness.cluster import netns

    command = ["ip", "netns", "exec", netns("client"), sys.executable, str(Path(__file__).resolve()), *args]
    process = subprocess.Popen(
        command,
        cwd=PROJECT_DIR,
        env=cluster.client_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(cluster.dir / "client.log", "ab"),
        text=True,
    )
    return Lines(process)


def processes_on(host: str, name: bytes) -> dict[int, dict]:
    """RSS (KiB) and open descriptors of host's processes whose command line holds `name`."""
    from harness.cluster import netns, run

    found = {}
    for pid in run("ip", "netns", "pids", netns(host), check=False).stdout.split():
        try:
            if name not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            status = Path(f"/proc/{pid}/status").read_text()
            descriptors = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
        rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        found[int(pid)] = {"rss_kib": rss, "fds": descriptors}
    return found


KINDS = (b"daphne", b"gunicorn", b"runsaleclock", b"haproxy", b"postgres", b"redis-server", b"watchers", b"buyers")


def cpu_seconds_by_kind() -> Counter:
    """CPU time used so far by the cluster's processes (every namespace's), by kind."""
    from harness.cluster import ADDRESSES, netns, run

    ticks = os.sysconf("SC_CLK_TCK")
    used = Counter()
    for host in ADDRESSES:
        for pid in run("ip", "netns", "pids", netns(host), check=False).stdout.split():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            kind = next((k.decode() for k in KINDS if k in command), "other")
            used[kind] += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return used


def daphnes() -> dict[int, dict]:
    """Each app host's Daphne process (harness/cluster.py runs one per host) and its open WebSockets."""
    from harness.cluster import APP_HOSTS, WS_PORT, netns, run

    found = {}
    for host in APP_HOSTS:
        established = run("ss", "-N", netns(host), "-Htn", "state", "established", f"( sport = :{WS_PORT} )")
        [(pid, row)] = processes_on(host, b"daphne").items()
        found[pid] = {**row, "host": host, "sockets": len(established.stdout.splitlines())}
    return found


def daphne_cpu_seconds() -> float:
    from harness.cluster import APP_HOSTS

    ticks = os.sysconf("SC_CLK_TCK")
    used = 0.0
    for host in APP_HOSTS:
        for pid in processes_on(host, b"daphne"):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used += (int(fields[11]) + int(fields[12])) / ticks
    return used


def wait_for_sockets_to_close(baseline: dict[int, dict], timeout: float = 120) -> None:
    """Until the Daphnes hold no more sockets than `baseline` and are done with the disconnects:
    closing 5,000 sockets keeps a process busy for seconds, long enough for HAProxy to mark it down
    (its checks get 2 s) while the next run connects."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = daphnes()
        if all(now.get(pid, row)["sockets"] <= row["sockets"] for pid, row in baseline.items()):
            break
        time.sleep(0.5)
    while time.monotonic() < deadline:
        used = daphne_cpu_seconds()
        time.sleep(2)
        if daphne_cpu_seconds() - used < 0.4:  # both under a tenth of a core (health checks cost some)
            return


def marked_down(cluster, lb_processes: int) -> list[str]:
    """HAProxy's "Server ... is DOWN" lines so far (a check failed twice: its sessions were cut)."""
    return [
        line.strip()
        for n in range(lb_processes)
        for line in cluster.log("lb", f"haproxy{n or ''}").splitlines()
        if " is DOWN" in line
    ]


def daphne_complaints(cluster) -> list[str]:
    from harness.cluster import APP_HOSTS

    return [
        line
        for host in APP_HOSTS
        for line in cluster.log(host, "daphne").splitlines()
        if '"level": "ERROR"' in line or '"level": "WARNING"' in line
    ]


def one_run(cluster, watchers: int, args, baseline: dict[int, dict] | None = None) -> dict:
    """One run; memory grows from `baseline` (the Daphnes before the first N-watcher run: after a
    run their RSS stays where it was, the allocator keeps the memory for the next sockets)."""
    from harness.cluster import ADDRESSES, LB_PORT

    load_before = os.getloadavg()
    down_before, complaints_before = len(marked_down(cluster, args.lb_processes)), len(daphne_complaints(cluster))
    buyers = on_client(cluster, "buyers", "--burst", str(args.burst))
    sale = int(buyers.next(120).split()[1])
    before = daphnes()
    baseline = baseline or before
    url = f"ws://{ADDRESSES['lb']}:{LB_PORT}/ws/sales/{sale}/"
    processes = min(args.client_processes, watchers)
    shares = [watchers // processes + (1 if n < watchers % processes else 0) for n in range(processes)]
    clients = [
        on_client(cluster, "watchers", "--url", url, "--count", str(n), "--connect-concurrency", "50") for n in shares
    ]
    connected, connect_seconds = 0, 0.0
    for client in clients:
        _, count, seconds = client.next(CONNECT_DEADLINE + 60).split()
        connected += int(count)
        connect_seconds = max(connect_seconds, float(seconds))
    time.sleep(2)  # let the last handshakes' leftovers settle before reading memory
    with_sockets = daphnes()
    haproxies = processes_on("lb", b"haproxy")

    cpu_before = cpu_seconds_by_kind()
    buyers.send("go")
    bought = json.loads(buyers.next(300))
    if "current" not in bought:
        raise RuntimeError(f"the burst failed: {bought}")
    for client in clients:
        client.send(f"final {bought['current']}")
    results = [json.loads(client.next(FINAL_DEADLINE + 60)) for client in clients]
    cpu_burst = cpu_seconds_by_kind()
    cpu_burst.subtract(cpu_before)
    after_burst = daphnes()
    down_during = marked_down(cluster, args.lb_processes)[down_before:]
    complaints_during = daphne_complaints(cluster)[complaints_before:]
    for lines in [buyers, *clients]:
        lines.send("exit")
    for lines in [buyers, *clients]:
        try:
            lines.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            lines.process.kill()
            lines.process.wait()
    wait_for_sockets_to_close(before)

    per_process = []
    for pid, row in with_sockets.items():
        base = baseline.get(pid)
        if base is None:
            continue
        sockets = row["sockets"] - before[pid]["sockets"]
        per_process.append(
            {
                "host": row["host"],
                "sockets": sockets,
                "fds": row["fds"],
                "rss_mib_before": round(base["rss_kib"] / 1024, 1),
                "rss_mib_with_sockets": round(row["rss_kib"] / 1024, 1),
                "rss_mib_after_burst": round(after_burst.get(pid, row)["rss_kib"] / 1024, 1),
                "kib_per_socket": round((row["rss_kib"] - base["rss_kib"]) / sockets, 1) if sockets >= 100 else None,
            }
        )
    grown = sum(p["sockets"] for p in per_process)
    rss_grown = sum(with_sockets[pid]["rss_kib"] - baseline[pid]["rss_kib"] for pid in with_sockets if pid in baseline)
    showing = sum(r["showing_final"] for r in results)
    last_shown = max((r["last_shown_at"] for r in results if r["last_shown_at"]), default=None)
    return {
        "watchers": watchers,
        "client_processes": processes,
        "connected": connected,
        "connect_seconds": connect_seconds,
        "purchases": bought["statuses"],
        "burst_seconds": bought["burst_seconds"],
        "burst_clock": [
            time.strftime("%H:%M:%S", time.localtime(t)) for t in (bought["burst_started"], bought["last_answer"])
        ],
        "final_stock": bought["current"],
        "invariant": bought["original"] - bought["current"] == bought["sold"],
        "showing_final": showing,
        "every_watcher_final": showing == watchers,
        "final_everywhere_after_last_commit_s": round(last_shown - bought["last_commit"], 3)
        if last_shown and showing == watchers
        else None,
        "final_everywhere_after_last_answer_s": round(last_shown - bought["last_answer"], 3)
        if last_shown and showing == watchers
        else None,
        "others_show": dict(sum((Counter(r["others_show"]) for r in results), Counter())),
        "reconnected": sum(r["reconnected"] for r in results),
        "closes": dict(sum((Counter(r["closes"]) for r in results), Counter())),
        "refused_handshakes": dict(sum((Counter(r["refused_handshakes"]) for r in results), Counter())),
        "marked_down": down_during,
        "daphne_warnings": [line[:300] for line in complaints_during[:3]] + [f"{len(complaints_during)} in all"],
        "daphne": per_process,
        "baseline": {pid: {"rss_kib": row["rss_kib"]} for pid, row in baseline.items()},
        "kib_per_socket": round(rss_grown / grown, 1) if watchers >= 100 else None,
        "cpu_seconds_burst_to_final": {kind: round(seconds, 1) for kind, seconds in cpu_burst.most_common()},
        "haproxy_fds": [row["fds"] for row in haproxies.values()],
        "load_average": [round(x, 1) for x in load_before + os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    roles = parser.add_subparsers(dest="role")
    watchers = roles.add_parser("watchers", help="(on the client host) open watchers")
    watchers.add_argument("--url", required=True)
    watchers.add_argument("--count", type=int, required=True)
    watchers.add_argument("--connect-concurrency", type=int, default=50)
    buyers = roles.add_parser("buyers", help="(on the client host) the sale and the burst")
    buyers.add_argument("--burst", type=int, required=True)
    buyers.add_argument("--per-user", type=int, default=5, help="purchases per buyer (MAX_UNITS_PER_USER)")
    parser.add_argument("--watchers", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=500, help="purchases after the watchers are connected")
    parser.add_argument("--client-processes", type=int, default=4, help="watcher processes on the client host")
    parser.add_argument("--lb-processes", type=int, default=2, help="HAProxy processes on lb")
    parser.add_argument("--repeat", type=int, default=1, help="N-watcher runs (after the one 1-watcher run)")
    parser.add_argument(
        "--layer",
        choices=["core", "pubsub"],
        default="core",
        help="channels_redis layer (pubsub: bench/settings_pubsub.py)",
    )
    parser.add_argument("--keep-logs", type=Path, help="copy every host's logs here before the teardown")
    args = parser.parse_args()
    raise_descriptor_limit()
    if args.role == "watchers":
        asyncio.run(watchers_main(args))
        return 0
    if args.role == "buyers":
        buyers_main(args)
        return 0

    from harness.cluster import Cluster

    settings = {"WS_MAX_SOCKETS_PER_ADDRESS": "0"}
    if args.layer == "pubsub":
        settings["DJANGO_SETTINGS_MODULE"] = "bench.settings_pubsub"
    print(f"descriptor limit {resource.getrlimit(resource.RLIMIT_NOFILE)}, load average {os.getloadavg()}", flush=True)
    with Cluster(settings=settings, lb_processes=args.lb_processes) as cluster:
        runs = [one_run(cluster, 1, args)]
        print(json.dumps(runs[-1]), flush=True)
        for n in range(args.repeat):
            runs.append(one_run(cluster, args.watchers, args, baseline=runs[1]["baseline"] if n else None))
            print(json.dumps(runs[-1]), flush=True)
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in cluster.dir.glob("*.log"):
                shutil.copy(log, args.keep_logs)
    single = runs[0]
    print()
    print(
        f"{'watchers':>8} {'connected':>9} {'showing final':>13} {'final everywhere after last commit':>34} "
        f"{'x 1 watcher':>11} {'reconnected':>11} {'marked down':>11} {'KiB/socket':>10}  load average (before, after)"
    )
    for run in runs:
        after = run["final_everywhere_after_last_commit_s"]
        ratio = after / max(single["final_everywhere_after_last_commit_s"] or 0, 0.001) if after else None
        print(
            f"{run['watchers']:>8} {run['connected']:>9} {run['showing_final']:>13} "
            f"{'-' if after is None else f'{after:.2f} s':>34} {'-' if ratio is None else f'{ratio:.1f}':>11} "
            f"{run['reconnected']:>11} {len(run['marked_down']):>11} {run['kib_per_socket'] or '-':>10}  "
            f"{run['load_average']}"
        )
    return 0 if all(run["every_watcher_final"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
