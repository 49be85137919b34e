#!/usr/bin/env python3
"""What one call of the Redis cache costs, as the hot path makes it (docs/performance.md "Performance").

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/cache_latency.py [--calls 20000]

Runs the project's own cache configuration (flashsale/settings.py with REDIS_URL) against a live
Redis and prints microseconds per call, best of --rounds, for the calls requests make: the fast
path's get_many (token + sale gate), a rate-limit count (django-ratelimit's add, then incr), a get
and a set; then the same get_many against a Redis that is not there, with the breaker open. Keys
are written under a prefix of this run and deleted at the end: nothing else in the database is
touched. One thread, no server: wall time is the client-side cost plus the loopback round trips;
CPU time is this process's share, what a call holds the GIL for.
"""

import argparse
import os
import socket
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    return parser.parse_args()


def best_of(rounds: int, calls: int, call) -> tuple[float, float]:
    """Microseconds per call, wall clock and this process's CPU, each the best round (the one least
    disturbed by the rest of the machine)."""
    wall = cpu = float("inf")
    for _ in range(rounds):
        started, started_cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            call()
        wall = min(wall, (time.perf_counter() - started) / calls)
        cpu = min(cpu, (time.process_time() - started_cpu) / calls)
    return wall * 1e6, cpu * 1e6


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    args = parse_args()
    if not os.environ.get("REDIS_URL"):
        sys.exit("set REDIS_URL to a Redis this may write a few keys to (they are deleted at the end)")
    os.environ["CACHE_KEY_PREFIX"] = f"bench-cache-{os.getpid()}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale.settings")
    sys.path.insert(0, str(PROJECT_DIR))
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache import cache
    from django.utils.module_loading import import_string

    backend = settings.CACHES["default"]["BACKEND"]
    print(f"backend: {backend}")
    keys = ["token", "gate-entry", "gate-generation", "limit", "plain"]
    cache.set("token", {"user_id": 1, "name": "Ada", "is_staff": False}, 60)
    cache.set("gate-entry", {"generation": 3, "sold_out": True, "start_time": 0, "end_time": 1}, 60)
    cache.set("gate-generation", 3, None)
    cache.set("limit", 0, 60)

    cases = {
        "get_many (3 keys)": lambda: cache.get_many(["token", "gate-entry", "gate-generation"]),
        "rate limit (add + incr)": lambda: cache.add("limit", 0, 60) or cache.incr("limit"),
        "get": lambda: cache.get("token"),
        "set": lambda: cache.set("plain", 1, 60),
    }
    try:
        for name, call in cases.items():
            wall, cpu = best_of(args.rounds, args.calls, call)
            print(f"{name:>26}: {wall:7.1f} us/call, {cpu:6.1f} us of it CPU")
    finally:
        cache.delete_many(keys)

    # The same backend pointed at a port nobody listens on: the first call fails, then the breaker answers.
    params = {key: value for key, value in settings.CACHES["default"].items() if key not in {"BACKEND", "LOCATION"}}
    dead_cache = import_string(backend)(f"redis://127.0.0.1:{unused_port()}/0", params)
    dead_cache.get_many(["token"])
    wall, cpu = best_of(args.rounds, args.calls, lambda: dead_cache.get_many(["token", "gate-entry"]))
    print(f"{'get_many, Redis down':>26}: {wall:7.1f} us/call, {cpu:6.1f} us of it CPU")


if __name__ == "__main__":
    main()
