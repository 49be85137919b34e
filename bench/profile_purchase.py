#!/usr/bin/env python3
"""What one API request costs in Python, in-process (no server, no network): the purchase that
succeeds, the refusal the sale gate knows, and the trivial health check.

    .venv/bin/python bench/profile_purchase.py                 # timings only
    .venv/bin/python bench/profile_purchase.py --profile gated # + a pyinstrument profile of one case
    .venv/bin/python bench/profile_purchase.py --push          # + the bought case per push mode

Each case runs --requests times through Django's full handler and middleware, called as a WSGI
server calls it (`--client test`: through django.test.Client instead, whose own bookkeeping per
request, signal handlers and response wrapping, no server pays), against PostgreSQL (it recreates
its own database, `flashsale_profile` by default) and, with --redis, a Redis cache (a spare db it
flushes). It prints microseconds per request: wall time, and the process's CPU time (every thread,
so the channel-layer sender's and the refusal tally's work counts too; queued sends are drained
before the CPU clock stops) beside the issue's budget, and the part of it on the request's own
thread. Measured on one thread, so the CPU figure is what a request holds the GIL for, the quantity
that bounds a gunicorn worker's throughput.

--dispatch times the bought and gated cases answered by the fast path (sales.fastpath) and by DRF's
view, interleaved.

--near times the cases with each process's copies of the token's user and the gate's refusal
(core.near_cache) kept and not (both lifetimes 0, every request reads Redis as before), interleaved;
--no-ratelimit runs everything with rate limits off, as bench/herd.py runs the server.

--push times the bought purchase, interleaved, with the after-commit push sent five ways: `wait`
(the request waits for Redis's answer, as before issue 20), `one by one` (handed to the process's
sender thread, which sends each message alone: BATCH_LIMIT 1), `batched` (the sender sends what
waited for a sale in one group_send, a round as soon as the last one is done), `<N> ms` (the
default now: the same, with at most one round per CHANNEL_LAYER_SEND_INTERVAL_MS, so a herd's
pushes gather for it) and `none` (nothing sent from the request:
what reading committed purchases from the database on the WebSocket side, live/db_feed.py, costs
the request). A channel of the channel layer joins the sale's group first, as a WebSocket process's
hub does while a page watches, so each send does all its work (without a member, channels_redis
stops after reading the group).

--threads N sends the requests from N threads at once, as a gunicorn gthread worker's threads do in
a herd (1 by default); the CPU "on the request's thread" is then the sum over the N threads. With
one thread each purchase's send is done before the next commits, so batches only form with several.
"""

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="flashsale_profile")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/6", help="flushed at the start; '' for no Redis")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--client",
        choices=["wsgi", "test", "both"],
        default="wsgi",
        help="wsgi: call Django's WSGI handler as a server does (default); test: django.test.Client, "
        "which adds its own signal handlers and response wrapping to every request",
    )
    parser.add_argument("--profile", choices=["bought", "gated", "health"], help="profile one case with pyinstrument")
    parser.add_argument("--push", action="store_true", help="time the bought case per push mode, interleaved")
    parser.add_argument(
        "--dispatch",
        action="store_true",
        help="time the bought and gated cases answered by sales.fastpath and by DRF's view, interleaved",
    )
    parser.add_argument(
        "--near",
        action="store_true",
        help="time the bought and gated cases with each process's copies of token and gate (core.near_cache) "
        "on and off (LOCAL_CACHE_MS=0: Redis every time, as before), interleaved",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each timing (best is kept)")
    parser.add_argument(
        "--no-ratelimit",
        action="store_true",
        help="rate limits off, as bench/herd.py runs the server (by default they are on, with limits never reached)",
    )
    parser.add_argument("--threads", type=int, default=1, help="threads sending the requests at once")
    return parser.parse_args()


class WsgiCaller:
    """Calls Django's WSGI application the way a WSGI server does: an environ, start_response, the
    body iterated and closed; nothing of django.test.Client's per-request bookkeeping."""

    def __init__(self, *, authorization: str):
        from django.core.wsgi import get_wsgi_application

        self.application = get_wsgi_application()
        self.authorization = authorization

    def call(self, method: str, path: str, body: dict | None = None) -> int:
        import io

        raw = json.dumps(body).encode() if body is not None else b""
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "testserver",
            "HTTP_AUTHORIZATION": self.authorization,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(raw),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        if body is not None:
            environ.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(raw)))
        statuses: list[str] = []
        result = self.application(environ, lambda status, headers, exc_info=None: statuses.append(status))
        try:
            b"".join(result)
        finally:
            result.close()
        return int(statuses[0][:3])


class TestClientCaller:
    def __init__(self, client):
        self.client = client

    def call(self, method: str, path: str, body: dict | None = None) -> int:
        if body is None:
            return self.client.generic(method, path).status_code
        return self.client.generic(method, path, json.dumps(body), content_type="application/json").status_code


def recreate_database(pg: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    args = parse_args()
    recreate_database(args.pg, args.database)
    os.environ.update(
        DATABASE_URL=f"{args.pg}/{args.database}",
        DEBUG="false",
        REQUEST_LOG="false",
        RATELIMIT_ENABLE="false" if args.no_ratelimit else "true",
        RATELIMIT_PURCHASE="1000000/m",
        RATELIMIT_GLOBAL="1000000/m",
        SECRET_KEY="profile-only-secret-key-" + "x" * 40,
        ALLOWED_HOSTS="testserver",
        MAX_UNITS_PER_USER="1000000",
        MAX_PURCHASE_QUANTITY="1",
    )
    if args.redis:
        os.environ["REDIS_URL"] = args.redis
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings")
    sys.path.insert(0, str(PROJECT_DIR))
    import django

    django.setup()
    from datetime import timedelta

    from django.core.cache import cache
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from accounts.models import User
    from sales.models import FlashSale

    call_command("migrate", verbosity=0)
    if args.redis:
        import redis

        redis.Redis.from_url(args.redis).flushdb()
    cache.clear()
    user = User.objects.create_user(email="profile@example.com", name="Profile", password="unused-password-1")
    token = Token.objects.create(user=user)
    now = timezone.now()
    live = FlashSale.objects.create(
        name="live", start_time=now - timedelta(minutes=1), end_time=now + timedelta(hours=1), original_stock=10_000_000
    )
    sold_out = FlashSale.objects.create(
        name="sold out",
        start_time=now - timedelta(minutes=1),
        end_time=now + timedelta(hours=1),
        original_stock=1,
        current_stock=0,
    )
    callers = {}
    if args.client in {"wsgi", "both"}:
        callers["wsgi"] = WsgiCaller(authorization=f"Token {token.key}").call
    if args.client in {"test", "both"}:
        callers["test"] = TestClientCaller(Client(HTTP_AUTHORIZATION=f"Token {token.key}")).call

    def cases_for(call):
        purchase = "/api/v1/flashsales/purchase"
        return {
            "bought": (lambda: call("POST", purchase, {"saleId": live.pk, "quantity": 1}), 201),
            "gated": (lambda: call("POST", purchase, {"saleId": sold_out.pk, "quantity": 1}), 409),
            "health": (lambda: call("GET", "/api/v1/health"), 200),
        }

    from live import layer_sender
    from sales import refusals

    def drain():
        layer_sender.wait_until_sent(30)
        refusals.flush(30)

    def timed(request, count: int) -> tuple[float, float, float]:
        """(wall, process CPU, request threads' CPU) microseconds per request."""
        spent: list[float] = []

        def send(share: int) -> None:
            started = time.thread_time()
            for _ in range(share):
                request()
            spent.append(time.thread_time() - started)

        senders = [threading.Thread(target=send, args=(count // args.threads,)) for _ in range(args.threads - 1)]
        wall, cpu = time.perf_counter(), time.process_time()
        for sender in senders:
            sender.start()
        send(count - count // args.threads * (args.threads - 1))
        for sender in senders:
            sender.join()
        wall = time.perf_counter() - wall
        own = sum(spent)
        drain()
        cpu = time.process_time() - cpu
        return wall / count * 1e6, cpu / count * 1e6, own / count * 1e6

    budgets = {"bought": 1500, "gated": 400, "health": 150}  # issue 20's CPU budgets, us
    best: dict[tuple[str, str], tuple[float, float, float]] = {}
    for _ in range(args.rounds):  # interleaved, best of each: the machine is shared
        for caller, call in callers.items():
            for name, (request, expected) in cases_for(call).items():
                for _ in range(50):  # warm: token cached, gate primed, pools open
                    assert request() == expected, name
                figures = timed(request, args.requests)
                previous = best.get((caller, name), figures)
                best[(caller, name)] = (
                    min(previous[0], figures[0]),
                    min(previous[1], figures[1]),
                    min(previous[2], figures[2]),
                )
    print(f"best of {args.rounds} interleaved rounds of {args.requests} requests, microseconds per request:")
    for (caller, name), (wall, cpu, own) in best.items():
        print(
            f"{caller:>5} {name:>7}: {wall:7.0f} wall, {cpu:7.0f} CPU (budget {budgets[name]}: "
            f"{'met' if cpu <= budgets[name] else 'NOT met'}), {own:7.0f} of it on the request's thread"
        )
    cases = cases_for(next(iter(callers.values())))
    if args.push:
        compare_push_modes(cases["bought"][0], timed, args, sale_id=live.pk)
    if args.dispatch:
        compare_dispatch(cases, timed, args)
    if args.near:
        compare_near_copies(cases, timed, args)
    if args.profile:
        from pyinstrument import Profiler

        request, _ = cases[args.profile]
        with Profiler(interval=0.0002) as profiler:
            for _ in range(args.requests):
                request()
        print(profiler.output_text(unicode=True, color=False, show_all=False))


def compare_push_modes(request, timed, args, *, sale_id: int) -> None:
    """The bought case with each way of sending its push, interleaved over rounds, best of each."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.conf import settings
    from django.test import override_settings

    from live import layer_sender, realtime

    layer = get_channel_layer()

    async def watch() -> None:
        await layer.group_add(realtime.sale_group(sale_id), await layer.new_channel())

    async_to_sync(watch)()

    # A tree from before batching has no BATCH_LIMIT: it sends one by one whatever this sets.
    queued, batch_limit, group_send = (
        layer_sender.send_soon,
        getattr(layer_sender, "BATCH_LIMIT", 1),
        layer_sender.group_send,
    )
    sends = [0]  # group_sends made, to the sale's group or any other

    def counted_group_send(*arguments) -> None:
        sends[0] += 1
        group_send(*arguments)

    layer_sender.group_send = counted_group_send
    interval = settings.CHANNEL_LAYER_SEND_INTERVAL_MS
    modes = {
        "wait": dict(send=counted_group_send, poll_ms=0, batch_limit=batch_limit, interval_ms=0),
        "one by one": dict(send=queued, poll_ms=0, batch_limit=1, interval_ms=0),
        "batched": dict(send=queued, poll_ms=0, batch_limit=batch_limit, interval_ms=0),
        f"{interval} ms": dict(send=queued, poll_ms=0, batch_limit=batch_limit, interval_ms=interval),
        "none": dict(send=queued, poll_ms=1000, batch_limit=batch_limit, interval_ms=0),
    }
    best: dict[str, tuple[float, float]] = {}
    sent: dict[str, int] = dict.fromkeys(modes, 0)
    for _ in range(args.rounds):
        for mode, how in modes.items():
            layer_sender.send_soon, layer_sender.BATCH_LIMIT = how["send"], how["batch_limit"]
            sends[0] = 0
            with override_settings(REALTIME_POLL_MS=how["poll_ms"], CHANNEL_LAYER_SEND_INTERVAL_MS=how["interval_ms"]):
                wall, cpu, _ = timed(request, args.requests)
            sent[mode] += sends[0]
            layer_sender.send_soon, layer_sender.BATCH_LIMIT = queued, batch_limit
            previous = best.get(mode)
            best[mode] = (wall, cpu) if previous is None else (min(previous[0], wall), min(previous[1], cpu))
    layer_sender.group_send = group_send
    print(
        f"push modes, bought purchase, {args.threads} thread(s), "
        f"best of {args.rounds} interleaved rounds of {args.requests}:"
    )
    for mode, (wall, cpu) in best.items():
        per_send = args.requests * args.rounds / sent[mode] if sent[mode] else 0
        print(f"  {mode:>10}: {wall:8.0f} us/request wall, {cpu:8.0f} us CPU, {per_send:5.1f} purchases per group_send")


def compare_near_copies(cases, timed, args) -> None:
    """The bought and gated cases with core.near_cache's copies kept and not (LOCAL_CACHE_MS=0),
    interleaved over rounds, best of each."""
    from django.conf import settings
    from django.test import override_settings

    kept = settings.LOCAL_CACHE_MS
    best: dict[tuple[str, str], tuple[float, float, float]] = {}
    for _ in range(args.rounds):
        for case in ("gated", "bought", "health"):
            for copies, local_ms in (("off", 0), (f"{kept} ms", kept)):
                with override_settings(LOCAL_CACHE_MS=local_ms, LOCAL_TOKEN_CACHE_MS=local_ms):
                    cases[case][0]()  # a copy is made by a request that reads Redis
                    figures = timed(cases[case][0], args.requests)
                previous = best.get((case, copies), figures)
                best[(case, copies)] = (
                    min(previous[0], figures[0]),
                    min(previous[1], figures[1]),
                    min(previous[2], figures[2]),
                )
    print(f"copies of token and gate, best of {args.rounds} interleaved rounds of {args.requests}:")
    for (case, copies), (wall, cpu, own) in best.items():
        print(f"  {case:>7} {copies:>7}: {wall:8.0f} us/request wall, {cpu:8.0f} us CPU, {own:8.0f} us on its thread")


def compare_dispatch(cases, timed, args) -> None:
    """Each case answered by the layer that answers it before DRF (sales.fastpath, core.health's
    LivenessMiddleware) and, with that layer stepping aside, by DRF's view; interleaved over
    rounds, best of each."""
    from unittest import mock

    from core.health import LivenessMiddleware
    from sales.fastpath import PlainPurchaseMiddleware

    def step_aside(case: str):
        if case == "health":
            return mock.patch.object(LivenessMiddleware, "__call__", lambda self, request: self.get_response(request))
        return mock.patch.object(PlainPurchaseMiddleware, "_answer", return_value=None)

    best: dict[tuple[str, str], tuple[float, float, float]] = {}
    for _ in range(args.rounds):
        for case in ("bought", "gated", "health"):
            for dispatch in ("before DRF", "DRF"):
                with step_aside(case) if dispatch == "DRF" else contextlib.nullcontext():
                    figures = timed(cases[case][0], args.requests)
                previous = best.get((case, dispatch), figures)
                best[(case, dispatch)] = (
                    min(previous[0], figures[0]),
                    min(previous[1], figures[1]),
                    min(previous[2], figures[2]),
                )
    print(f"dispatch, best of {args.rounds} interleaved rounds of {args.requests}:")
    for (case, dispatch), (wall, cpu, own) in best.items():
        print(
            f"  {case:>7} {dispatch:>10}: {wall:8.0f} us/request wall, {cpu:8.0f} us CPU, {own:8.0f} us on its thread"
        )


if __name__ == "__main__":
    main()
