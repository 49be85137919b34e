#!/usr/bin/env python3
"""WebSocket fan-out benchmark: how long until every watcher of a sale sees a purchase's stock.

    .venv/bin/python bench/ws_fanout.py                 # 1 then 1000 clients, core and pub/sub layers
    .venv/bin/python bench/ws_fanout.py --clients 300 --layers core

Starts the production topology (deploy/run: HAProxy -> gunicorn for HTTP, two Daphne processes for
/ws/) on free loopback ports against its own database and Redis db (as bench/herd.py), opens N
WebSocket clients on ws/sales/<id>/ (HAProxy spreads them over the Daphne processes), then makes
purchases over HTTP one at a time and measures, per purchase, the time from its commit (the
purchase's own timestamp, taken just before COMMIT) to each client receiving the new stock.
Then a burst of parallel purchases, after which every client must show the final stock: a client
that does not is reported as a miss (the core layer drops messages over its per-channel capacity
with only an info log). Prints p50/p99/max, the ratio of the N-client "last client" time to the
1-client one, and the RSS of every server process. Results go to bench/results/.
"""

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
import herd  # noqa: E402  (shares the environment helpers)

LAYER_SETTINGS = {"core": "flashsale.settings", "pubsub": "bench.settings_pubsub"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--layers", default="core,pubsub", help="comma-separated: core, pubsub")
    parser.add_argument("--purchases", type=int, default=5, help="sequential purchases measured per run")
    parser.add_argument("--burst", type=int, default=200, help="parallel purchases before the final-stock check")
    parser.add_argument(
        "--final-wait", type=float, default=60, help="seconds every client gets to show the final stock"
    )
    parser.add_argument("--connect-batch", type=int, default=100, help="sockets opened at once while connecting")
    parser.add_argument("--database", default="flashsale_bench_ws")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/5")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    return parser.parse_args()


def rss_by_process(process: subprocess.Popen) -> list[dict]:
    rows = []
    for pid in herd.server_pids(process):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        rss_kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        if "daphne" in cmd or "gunicorn" in cmd or "haproxy" in cmd:
            name = "daphne" if "daphne" in cmd else "gunicorn" if "gunicorn" in cmd else "haproxy"
            rows.append({"pid": pid, "process": name, "rss_mb": round(rss_kb / 1024, 1)})
    return sorted(rows, key=lambda r: (r["process"], r["pid"]))


class Watcher:
    """One WebSocket client: remembers when it first saw each stock version."""

    def __init__(self):
        self.seen: dict[int, float] = {}  # stock value -> time.time() it first arrived
        self.last_stock: int | None = None
        self.ready = asyncio.Event()
        self.error: str | None = None

    async def run(self, url: str, origin: str, stop: asyncio.Event):
        try:
            async with websockets.connect(url, origin=origin, open_timeout=60, max_queue=None) as socket:
                async for raw in socket:  # cancelled by the run when it is over
                    # Purchase messages are most of the traffic; skip parsing them (the client
                    # process, not the server, is what a thousand sockets saturate first here).
                    if '"type":"purchase"' in raw or '"type":"status"' in raw:
                        continue
                    message = json.loads(raw)
                    now = time.time()
                    if message.get("type") in ("snapshot", "stock"):
                        self.last_stock = message["currentStock"]
                        self.seen.setdefault(message["currentStock"], now)
                        self.ready.set()
        except asyncio.CancelledError:
            pass
        except Exception as error:  # a dropped socket is a result, not a crash of the bench
            self.error = repr(error)
            self.ready.set()


def seed(database_url: str, redis_url: str, users: int):
    herd.setup_django(database_url, redis_url)
    from django.contrib.auth.hashers import make_password
    from django.utils import timezone as dj_timezone
    from rest_framework.authtoken.models import Token

    from accounts.models import User
    from sales.models import FlashSale

    password = make_password("bench-password-123")
    created = User.objects.bulk_create(
        User(email=f"watcher-buyer{i}@bench.example", name=f"Buyer {i}", password=password) for i in range(users)
    )
    tokens = [t.key for t in Token.objects.bulk_create(Token(user=u, key=Token.generate_key()) for u in created)]
    now = dj_timezone.now()
    return tokens, lambda: FlashSale.objects.create(
        name="fan-out",
        original_stock=100_000,
        current_stock=100_000,
        start_time=now - dj_timezone.timedelta(minutes=1),
        end_time=now + dj_timezone.timedelta(hours=2),
    )


async def one_run(base_url: str, sale, tokens: list[str], clients: int, args) -> dict:
    ws_url = base_url.replace("http://", "ws://") + f"/ws/sales/{sale.pk}/"
    stop = asyncio.Event()
    watchers = [Watcher() for _ in range(clients)]
    tasks = []
    connect_started = time.monotonic()
    # Watchers join in batches of --connect-batch, each batch connected before the next starts:
    # this measures fan-out to N open sockets, not a storm of N simultaneous handshakes (on this
    # 2-core box Daphne refuses handshakes its app has not accepted within 5 s with a 403).
    for start in range(0, clients, args.connect_batch):
        batch = watchers[start : start + args.connect_batch]
        tasks.extend(asyncio.ensure_future(w.run(ws_url, base_url, stop)) for w in batch)
        await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in batch)), timeout=120)
    connect_s = time.monotonic() - connect_started
    failed_connect = sum(1 for w in watchers if w.error)

    latencies_ms: list[float] = []
    last_client_ms: list[float] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:

        async def buy(token: str) -> dict:
            response = await http.post(
                "/api/v1/flashsales/purchase",
                json={"saleId": sale.pk, "quantity": 1},
                headers={"Authorization": f"Token {token}"},
            )
            response.raise_for_status()
            return response.json()["data"]

        for n in range(args.purchases):
            data = await buy(tokens[n])
            committed = datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00")).timestamp()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                got = [
                    w
                    for w in watchers
                    if not w.error and w.last_stock is not None and w.last_stock <= data["remainingStock"]
                ]
                if len(got) == clients - failed_connect:
                    break
                await asyncio.sleep(0.01)
            arrivals = []
            for w in watchers:
                if w.error:
                    continue
                # Purchases here run one at a time and stock only goes down, so the first message
                # at or below this purchase's remaining stock is the one that reports it.
                times = [t for stock, t in w.seen.items() if stock <= data["remainingStock"]]
                if times:
                    arrivals.append((min(times) - committed) * 1000)
            latencies_ms.extend(arrivals)
            if arrivals:
                last_client_ms.append(max(arrivals))
            await asyncio.sleep(0.3)  # let every socket's coalescing window close

        # The burst: parallel purchases, then every client must end on the database's final stock.
        semaphore = asyncio.Semaphore(50)

        async def limited(token):
            async with semaphore:
                try:
                    return await buy(token)
                except httpx.HTTPError:
                    return None

        burst_started = time.monotonic()
        await asyncio.gather(*(limited(tokens[args.purchases + i]) for i in range(args.burst)))
        burst_s = time.monotonic() - burst_started

    from asgiref.sync import sync_to_async

    final = await sync_to_async(lambda: type(sale).objects.get(pk=sale.pk).current_stock)()
    waited_from = time.monotonic()
    deadline = waited_from + args.final_wait
    while time.monotonic() < deadline:
        if all(w.last_stock == final for w in watchers if not w.error):
            break
        await asyncio.sleep(0.05)
    final_seen_s = time.monotonic() - waited_from
    missed = sum(1 for w in watchers if not w.error and w.last_stock != final)
    errors = sorted({w.error[:120] for w in watchers if w.error})
    from collections import Counter

    last_stocks = Counter(w.last_stock for w in watchers if not w.error and w.last_stock != final)
    dropped = sum(1 for w in watchers if w.error)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    def pct(values, q):
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]

    return {
        "clients": clients,
        "connect_s": round(connect_s, 2),
        "failed_connect": failed_connect,
        "p50_ms": pct(latencies_ms, 50),
        "p99_ms": pct(latencies_ms, 99),
        "max_ms": max(latencies_ms) if latencies_ms else float("nan"),
        "last_client_median_ms": statistics.median(last_client_ms) if last_client_ms else float("nan"),
        "burst_purchases": args.burst,
        "burst_s": round(burst_s, 2),
        "final_stock": final,
        "final_stock_seen_after_s": round(final_seen_s, 2),
        "missed_final_stock": missed,
        "sockets_dropped": dropped,
        "socket_errors": errors,
        "missed_last_stock_values": {str(k): v for k, v in last_stocks.most_common(5)},
    }


def main() -> int:
    args = parse_args()
    herd.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    herd.need_tool("haproxy", "haproxy")
    results = {"when": datetime.now(UTC).isoformat(), "runs": []}
    setup_args = argparse.Namespace(pg=args.pg, database=args.database, redis=args.redis)
    database_url = herd.prepare_database(setup_args)
    tokens, new_sale = seed(database_url, args.redis, args.purchases + args.burst)
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    for layer in [name.strip() for name in args.layers.split(",") if name.strip()]:
        env_args = argparse.Namespace(redis=args.redis, request_log="false", workers=args.workers, gunicorn_threads=4)
        env = herd.server_env(env_args, database_url)
        env["DJANGO_SETTINGS_MODULE"] = LAYER_SETTINGS[layer]
        env["PYTHONPATH"] = str(herd.PROJECT_DIR)
        herd_args = argparse.Namespace(server="gunicorn", workers=args.workers, gunicorn_threads=4)
        process, base_url = herd.start_servers(herd_args, env, "haproxy")
        try:
            for clients in (1, args.clients):
                sale = new_sale()
                run = asyncio.run(one_run(base_url, sale, tokens, clients, args))
                run["layer"] = layer
                run["rss"] = rss_by_process(process)
                results["runs"].append(run)
                print(
                    f"{layer:7} {clients:5} clients: p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms, "
                    f"max {run['max_ms']:.1f} ms, missed final stock {run['missed_final_stock']}, "
                    f"dropped {run['sockets_dropped']} {run['socket_errors']}, final {run['final_stock']}, "
                    f"missed ones show {run['missed_last_stock_values']}",
                    flush=True,
                )
                # The sale's tokens are reused; give the next run fresh stock and per-user room.
                from sales.models import Purchase

                Purchase.objects.all().delete()
        finally:
            herd.stop_servers(process)

    print()
    print(f"WebSocket fan-out - {args.purchases} sequential purchases, then a burst of {args.burst}")
    print(
        f"{'layer':7} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'last x N=1':>10} "
        f"{'missed':>6} {'dropped':>7}  RSS per server process (MB)"
    )
    by_layer = {}
    for run in results["runs"]:
        by_layer.setdefault(run["layer"], {})[run["clients"]] = run
    for layer, runs in by_layer.items():
        one = runs.get(1)
        for clients, run in sorted(runs.items()):
            ratio = run["max_ms"] / one["max_ms"] if one and one["max_ms"] else float("nan")
            rss = ", ".join(f"{r['process']} {r['rss_mb']}" for r in run["rss"])
            print(
                f"{layer:7} {clients:7} {run['p50_ms']:8.1f} {run['p99_ms']:8.1f} {run['max_ms']:8.1f} "
                f"{ratio:10.1f} {run['missed_final_stock']:6} {run['sockets_dropped']:7}  {rss}"
            )
    out = herd.RESULTS_DIR / f"ws-fanout-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {out.relative_to(herd.PROJECT_DIR)}")
    return 0 if all(r["missed_final_stock"] == 0 for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
