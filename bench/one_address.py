#!/usr/bin/env python3
"""What one client address may take before other buyers' GETs slow down (docs/performance.md "One address").

    .venv/bin/python bench/one_address.py [--rates 0,10,20,40,80,160] [--duration 8]

Starts the production topology (deploy/run: HAProxy -> gunicorn, rate limits off, so the service,
not the limiter, is measured) on a database of its own (created, migrated, dropped at the end) and
the Redis of REDIS_URL under keys of this run (never flushed). For each rate, one "address" asks
for anonymous leaderboard pages at that many requests per second (open loop, asyncio) while a buyer
reads the active sale with its token every 50 ms; then the same for the OpenAPI schema. Prints, per
rate, what the address got served per second and the buyer's median and 90th percentile latency.
The per-IP limits (RATELIMIT_GLOBAL, RATELIMIT_SCHEMA) are sized from these figures.
"""

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg

PROJECT_DIR = Path(__file__).resolve().parent.parent
VENV_PYTHON = PROJECT_DIR / ".venv" / "bin" / "python"
SECRET_KEY = "bench-one-address-secret-key-not-for-production-Zr4Tb8Kw1Vn6Yd3x7Qp2"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="0,10,20,40,80,160", help="requests per second of the one address")
    parser.add_argument("--schema-rates", default="0,2,5,10,20")
    parser.add_argument("--duration", type=float, default=8, help="seconds per rate")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="server (a database is created)")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--purchases", type=int, default=500, help="purchases on the leaderboard")
    return parser.parse_args()


def free_port_run(count: int) -> int:
    import socket

    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + count < 65535:
            return port
    raise RuntimeError("no free ports")


def manage(env: dict, *args: str) -> str:
    return subprocess.run(
        [str(VENV_PYTHON), "manage.py", *args], cwd=PROJECT_DIR, env=env, check=True, capture_output=True, text=True
    ).stdout


SEED = """
from django.contrib.auth import get_user_model
from sales.models import FlashSale, Purchase
sale = FlashSale.objects.get(pk={sale_id})
User = get_user_model()
users = User.objects.bulk_create(
    [User(email=f"seed{{n}}@example.com", name=f"Seed {{n}}") for n in range({count})]
)
Purchase.objects.bulk_create([Purchase(user=user, sale=sale, quantity=1) for user in users])
FlashSale.objects.filter(pk=sale.pk).update(current_stock=sale.original_stock - {count})
"""


async def one_address(base_url: str, path: str, rate: float, duration: float) -> tuple[int, int]:
    """Open-loop requests at `rate` per second for `duration`; (answered 200, sent)."""
    if rate <= 0:
        await asyncio.sleep(duration)
        return 0, 0
    ok = sent = 0
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:

        async def one():
            nonlocal ok
            try:
                if (await client.get(path)).status_code == 200:
                    ok += 1
            except httpx.HTTPError:
                pass

        tasks = []
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < duration:
            tasks.append(asyncio.create_task(one()))
            sent += 1
            await asyncio.sleep(max(0.0, sent / rate - elapsed))
        await asyncio.gather(*tasks)
    return ok, sent


async def buyer(base_url: str, token: str, duration: float) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        started = time.perf_counter()
        while time.perf_counter() - started < duration:
            before = time.perf_counter()
            await client.get("/api/v1/flashsales/active", headers={"Authorization": f"Token {token}"})
            latencies.append(time.perf_counter() - before)
            await asyncio.sleep(0.05)
    return latencies


async def phase(base_url: str, token: str, path: str, rate: float, duration: float) -> dict:
    (ok, sent), latencies = await asyncio.gather(
        one_address(base_url, path, rate, duration), buyer(base_url, token, duration)
    )
    latencies.sort()
    return {
        "rate": rate,
        "served_per_s": ok / duration,
        "sent": sent,
        "buyer_median_ms": statistics.median(latencies) * 1000,
        "buyer_p90_ms": latencies[int(len(latencies) * 0.9)] * 1000,
    }


def main() -> int:
    args = parse_args()
    run = uuid.uuid4().hex[:8]
    database = f"bench_one_address_{run}"
    with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    env = {
        **os.environ,
        "DATABASE_URL": f"{args.pg}/{database}",
        "REDIS_URL": args.redis,
        "CACHE_KEY_PREFIX": f"bench-one-{run}",
        "CHANNEL_PREFIX": f"bench-one-{run}",
        "DEBUG": "false",
        "SECRET_KEY": SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "RATELIMIT_ENABLE": "false",
        "REQUEST_LOG": "false",
        "DEPLOY_PLAIN_HTTP": "1",
        "DEPLOY_SKIP_SETUP": "1",
        "DEPLOY_NO_CLOCK": "1",
    }
    env.pop("TEST_DATABASE_NAME", None)
    server = None
    try:
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput", "--verbosity", "0")
        sale_id = int(manage(env, "createsale", "--name", "One address", "--stock", "100000", "--duration", "86400"))
        manage(env, "shell", "-c", SEED.format(sale_id=sale_id, count=args.purchases))
        port = free_port_run(4)
        env.update(PORT=str(port), BACKEND_PORT_BASE=str(port + 1))
        server = subprocess.Popen(
            [str(PROJECT_DIR / "deploy" / "run")],
            cwd=PROJECT_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base_url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("deploy/run did not come up")
            time.sleep(0.3)
        account = {"name": "Buyer", "email": "buyer@example.com", "password": "one-address-pass-1"}
        httpx.post(f"{base_url}/api/v1/auth/register", json=account, timeout=10)
        token = httpx.post(f"{base_url}/api/v1/auth/login", json=account, timeout=10).json()["data"]["token"]
        leaderboard = f"/api/v1/leaderboard?saleId={sale_id}&limit=100"
        print(f"one address, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, deploy/run defaults")
        print(f"{'path':<12} {'rate/s':>7} {'served/s':>9} {'buyer median ms':>16} {'buyer p90 ms':>13}")
        for label, path, rates in (
            ("leaderboard", leaderboard, args.rates),
            ("schema", "/api/schema/", args.schema_rates),
        ):
            for rate in [float(r) for r in rates.split(",")]:
                result = asyncio.run(phase(base_url, token, path, rate, args.duration))
                print(
                    f"{label:<12} {rate:>7g} {result['served_per_s']:>9.1f} "
                    f"{result['buyer_median_ms']:>16.1f} {result['buyer_p90_ms']:>13.1f}",
                    flush=True,
                )
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
