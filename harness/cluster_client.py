"""The client host of harness/cluster.py: drives a keyed purchase herd and WebSocket watchers through lb.

    python -m harness.cluster_client herd --stock 150 --users 60 --attempts 3 --watchers 20
    python -m harness.cluster_client queue --stock 30 --users 40 --rate 10

Run inside the client namespace with the cluster's DATABASE_URL (to create the sale and buyers and to
check the outcome against the database afterwards) and CLUSTER_LB_URL. Prints "progress N" lines
while answers come in (a test injects its fault on one of them), then one JSON line with the results.
Every loop is bounded in time.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter

import django

FINAL = {201, 404, 409, 422}  # answers a retry would not change
RETRY_DEADLINE = 90
SETTLE_DEADLINE = 20


def setup(stock: int, users: int, **sale_settings):
    from datetime import timedelta

    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from accounts.models import User
    from sales.models import FlashSale

    now = timezone.now()
    sale = FlashSale.objects.create(
        name=f"cluster {uuid.uuid4().hex[:8]}",
        start_time=now - timedelta(minutes=1),
        end_time=now + timedelta(hours=1),
        original_stock=stock,
        current_stock=stock,
        **sale_settings,
    )
    run = uuid.uuid4().hex[:10]
    buyers = User.objects.bulk_create(
        [User(name=f"Buyer {i}", email=f"c{run}-{i}@example.com", password="!") for i in range(users)]
    )
    tokens = {Token.objects.create(user=user).key: user.pk for user in buyers}
    return sale, tokens


async def buy(client, lb, token, key, sale_id, progress):
    headers = {"Authorization": f"Token {token}", "Idempotency-Key": key}
    deadline = time.monotonic() + RETRY_DEADLINE
    tries = 0
    import httpx

    while True:
        tries += 1
        try:
            response = await client.post(
                f"{lb}/api/v1/flashsales/purchase", json={"saleId": sale_id, "quantity": 1}, headers=headers
            )
            # A claim left by a request that died with its host answers "in use" until it is
            # IDEMPOTENCY_LOCK_SECONDS old; then the retry takes it over (docs/operations.md "Idempotent purchases").
            in_use = response.status_code == 409 and response.json()["error"]["code"] == "idempotency_key_in_use"
            if response.status_code in FINAL and not in_use:
                progress()
                return {
                    "status": response.status_code,
                    "body": response.json(),
                    "tries": tries,
                    "key": key,
                    "token": token,
                }
        except httpx.TransportError:
            pass  # the answer was lost: the same key makes the retry safe
        if time.monotonic() > deadline:
            return {"status": None, "tries": tries, "key": key, "token": token}
        await asyncio.sleep(0.2)


class Watcher:
    """One WebSocket through lb on the sale; reconnects when its host goes away."""

    def __init__(self, url: str):
        self.url = url
        self.stock = None
        self.connections = 0
        self.pushes = 0  # stock pushes on the current connection (its snapshot not counted)
        self.stop = False

    async def run(self, connecting: asyncio.Semaphore):
        import websockets

        while not self.stop:
            try:
                async with connecting:
                    socket = await websockets.connect(self.url, open_timeout=10)
                async with socket:
                    self.connections += 1
                    self.pushes = 0
                    # Until the socket closes or the task is cancelled (no per-receive timeout:
                    # thousands of watchers would spend the client's CPU on timers).
                    async for text in socket:
                        message = json.loads(text)
                        if message.get("currentStock") is not None:
                            self.stock = message["currentStock"]
                            self.pushes += message["type"] == "stock"
            except (TimeoutError, OSError, websockets.WebSocketException):
                await asyncio.sleep(0.2)


async def herd(args, sale, tokens):
    import httpx
    from asgiref.sync import sync_to_async

    lb = os.environ["CLUSTER_LB_URL"]
    watchers = [Watcher(f"{lb.replace('http', 'ws')}/ws/sales/{sale.pk}/") for _ in range(args.watchers)]
    # A few hundred handshakes at a time: thousands at once would overflow the listen backlogs.
    connecting = asyncio.Semaphore(200)
    watching = [asyncio.create_task(w.run(connecting)) for w in watchers]
    deadline = time.monotonic() + 20 + args.watchers / 50
    while any(w.connections == 0 for w in watchers) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    print(f"connected {sum(1 for w in watchers if w.connections)}", flush=True)
    answered = 0

    def progress():
        nonlocal answered
        answered += 1
        if answered % 10 == 0:
            print(f"progress {answered}", flush=True)

    attempts = [(token, f"{token[:8]}-{n}") for n in range(args.attempts) for token in tokens]
    limits = httpx.Limits(max_connections=args.concurrency)
    print("started", flush=True)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        gate = asyncio.Semaphore(args.concurrency)

        async def one(token, key):
            async with gate:
                return await buy(client, lb, token, key, sale.pk, progress)

        results = await asyncio.gather(*(one(t, k) for t, k in attempts))

    herd_done = time.monotonic()
    final_stock = await sync_to_async(lambda: type(sale).objects.get(pk=sale.pk).current_stock)()
    deadline = time.monotonic() + SETTLE_DEADLINE
    while any(w.stock != final_stock for w in watchers) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    settle_seconds = round(time.monotonic() - herd_done, 2)
    for w, task in zip(watchers, watching, strict=True):
        w.stop = True
        task.cancel()
    await asyncio.gather(*watching, return_exceptions=True)
    return results, watchers, settle_seconds


def check(sale, tokens, results) -> dict:
    """The invariants, from the database."""
    from django.db.models import Count, Sum

    from sales.models import Purchase

    sale.refresh_from_db()
    purchases = Purchase.objects.filter(sale=sale)
    sold = purchases.aggregate(total=Sum("quantity"))["total"] or 0
    per_user = purchases.values("user").annotate(units=Sum("quantity"), n=Count("id"))
    received = [r for r in results if r["status"] == 201]
    ids = [r["body"]["data"]["purchaseId"] for r in received]
    stored = {p.pk: p for p in purchases.filter(pk__in=ids)}
    mismatched = [
        r["key"]
        for r in received
        if (p := stored.get(r["body"]["data"]["purchaseId"])) is None or p.user_id != tokens[r["token"]]
    ]
    from django.conf import settings

    return {
        "original": sale.original_stock,
        "current": sale.current_stock,
        "sold": sold,
        "stored_purchases": purchases.count(),
        "max_units_per_user": max((row["units"] for row in per_user), default=0),
        "cap": settings.MAX_UNITS_PER_USER,
        "received_201": len(ids),
        "distinct_201_ids": len(set(ids)),
        "mismatched_201": mismatched,
    }


async def waiting_room(args, sale, tokens):
    """Every buyer joins the sale's line on one app host or the other (directly, so both take places
    in the same line), tries to buy through lb at once, then watches their place through lb and buys
    once admitted, or stops when the line closes."""
    import httpx
    from asgiref.sync import sync_to_async

    from harness.cluster import ADDRESSES, APP_HOSTS, HTTP_PORT

    lb = os.environ["CLUSTER_LB_URL"]
    hosts = [f"http://{ADDRESSES[host]}:{HTTP_PORT}" for host in APP_HOSTS]
    drawn = sync_to_async(lambda: type(sale).objects.filter(pk=sale.pk, queue_drawn_at__isnull=False).exists())
    deadline = time.monotonic() + SETTLE_DEADLINE
    while not await drawn() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)

    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        gate = asyncio.Semaphore(args.concurrency)

        async def call(method, url, token, **kwargs):
            async with gate:
                response = await client.request(method, url, headers={"Authorization": f"Token {token}"}, **kwargs)
            return response.status_code, response.json()

        queue_path = f"/api/v1/flashsales/{sale.pk}/queue"
        purchase = {"saleId": sale.pk, "quantity": 1}
        failed_joins: list[str] = []

        async def join(host, token):
            # As a client would: a join that failed without a refusal (a 5xx, a lost answer) is sent
            # again; a repeat answers the place already taken (200), never a second one.
            deadline = time.monotonic() + RETRY_DEADLINE
            while True:
                try:
                    status, body = await call("POST", f"{host}{queue_path}", token)
                except httpx.HTTPError as error:
                    status, body = None, {"success": False, "error": {"code": type(error).__name__}}
                if status in (200, 201) or (status is not None and status < 500) or time.monotonic() > deadline:
                    return status, body
                failed_joins.append(f"{status} {code_of(body)}")
                await asyncio.sleep(0.25)

        joins = await asyncio.gather(*(join(hosts[n % len(hosts)], token) for n, token in enumerate(tokens)))
        first_tries = await asyncio.gather(
            *(call("POST", f"{lb}/api/v1/flashsales/purchase", token, json=purchase) for token in tokens)
        )

        async def wait_and_buy(token, first_try):
            # "key" names the attempt in check()'s report, as the herd's Idempotency-Key does.
            outcome = {"token": token, "key": token[:8], "first_try": first_try[0], "first_code": code_of(first_try[1])}
            if first_try[0] == 201:
                return {**outcome, "status": 201, "body": first_try[1], "seen": "admitted"}
            deadline = time.monotonic() + RETRY_DEADLINE
            seen = None
            while time.monotonic() < deadline:
                status, body = await call("GET", f"{lb}{queue_path}", token)
                if status != 200:
                    # Kept for check(): a read that failed says nothing of the place; read again.
                    outcome.setdefault("failed_reads", []).append((status, code_of(body)))
                    await asyncio.sleep(0.25)
                    continue
                seen = body["data"]["status"]
                if seen != "waiting":
                    break
                await asyncio.sleep(0.25)
            status, body = await call("POST", f"{lb}/api/v1/flashsales/purchase", token, json=purchase)
            return {**outcome, "status": status, "body": body, "seen": seen}

        results = await asyncio.gather(*(wait_and_buy(t, first) for t, first in zip(tokens, first_tries, strict=True)))
    return joins, results, failed_joins


def code_of(body: dict) -> str | None:
    return body["error"]["code"] if not body.get("success", True) else None


def admission_summary(sale) -> dict:
    """The line as the database holds it: places, how far admission went, each admission step."""
    from datetime import timedelta

    from django.db.models import Max

    from sales.models import Purchase, QueuePlace

    sale.refresh_from_db()
    places = QueuePlace.objects.filter(sale=sale)
    lease = timedelta(seconds=sale.admission_seconds)
    steps = (
        places.filter(admitted_until__isnull=False)
        .values("admitted_until")
        .annotate(through=Max("position"))
        .order_by("admitted_until")
    )
    bought = set(Purchase.objects.filter(sale=sale).values_list("user_id", flat=True))
    return {
        "places": places.count(),
        "positions": sorted(places.values_list("position", flat=True)),
        "admitted_through": sale.admitted_through,
        "admitted_positions": sorted(places.filter(admitted_until__isnull=False).values_list("position", flat=True)),
        "bought_positions": sorted(places.filter(user_id__in=bought).values_list("position", flat=True)),
        # Each step's moment, in seconds after the draw, and the position it admitted through.
        "steps": [
            [round((step["admitted_until"] - lease - sale.queue_drawn_at).total_seconds(), 3), step["through"]]
            for step in steps
        ],
        "rate": sale.admit_per_second,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["herd", "queue"])
    parser.add_argument("--stock", type=int, default=150)
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--attempts", type=int, default=3, help="keyed purchases per user, one unit each")
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=30)
    parser.add_argument("--rate", type=int, default=10, help="queue: the waiting room's admitPerSecond")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings")
    django.setup()
    if args.command == "queue":
        return queue_main(args)

    sale, tokens = setup(args.stock, args.users)
    started = time.monotonic()
    results, watchers, settle_seconds = asyncio.run(herd(args, sale, tokens))
    elapsed = time.monotonic() - started
    from django.db import connection

    connection.close()
    summary = check(sale, tokens, results)
    summary.update(
        sale=sale.pk,
        statuses=dict(Counter(str(r["status"]) for r in results)),
        codes=dict(Counter(r["body"]["error"]["code"] for r in results if r["status"] not in (201, None))),
        retried=sum(1 for r in results if r["tries"] > 1),
        watcher_stocks=dict(Counter(str(w.stock) for w in watchers)),
        watcher_reconnects=sum(1 for w in watchers if w.connections > 1),
        # Reconnected watchers that then got pushes, not only their new snapshot.
        watchers_pushed_after_reconnect=sum(1 for w in watchers if w.connections > 1 and w.pushes),
        users=len(tokens),
        seconds=round(elapsed, 2),
        # From the last answer of the herd until every watcher showed the final stock.
        settle_seconds=settle_seconds,
        tries=sum(r["tries"] for r in results),
    )
    print(json.dumps(summary), flush=True)


def queue_main(args):
    from django.db import connection

    sale, tokens = setup(args.stock, args.users, waiting_room=True, admit_per_second=args.rate)
    joins, results, failed_joins = asyncio.run(waiting_room(args, sale, list(tokens)))
    connection.close()
    summary = check(sale, tokens, results)
    from sales.models import QueuePlace

    position_of = dict(QueuePlace.objects.filter(sale=sale).values_list("user_id", "position"))
    summary.update(
        sale=sale.pk,
        joins=dict(Counter(str(status) for status, _ in joins)),
        join_positions=sorted(body["data"]["position"] or 0 for status, body in joins if status in (200, 201)),
        join_refusals=dict(Counter(f"{status} {code_of(body)}" for status, body in joins if status not in (200, 201))),
        failed_joins=dict(Counter(failed_joins)),
        statuses=dict(Counter(str(r["status"]) for r in results)),
        codes=dict(Counter(code_of(r["body"]) for r in results if r["status"] != 201)),
        seen=dict(Counter(str(r["seen"]) for r in results)),
        failed_reads=dict(Counter(f"{status} {code}" for r in results for status, code in r.get("failed_reads", []))),
        # Each buyer's first try, right after joining, by the buyer's position in the line.
        first_tries={str(position_of[tokens[r["token"]]]): [r["first_try"], r["first_code"]] for r in results},
        **admission_summary(sale),
    )
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
