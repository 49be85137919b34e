#!/usr/bin/env python3
"""The waiting room with a long line: what one sale clock step and one read of a place cost with
100,000 places on a sale against 100 (issue 22: "one admission step costs the same").

    .venv/bin/python bench/queue_step.py            # ~3 minutes: steps, in-process reads, then wrk
    .venv/bin/python bench/queue_step.py --no-http  # the steps and in-process reads only

It recreates its own database (`flashsale_bench_queue`), flushes its own Redis db (7) and seeds three
waiting-room sales in the same state but for the line:
  small: --small places (default 100), admitted through 60: 40 admissions expired, 20 running, 5 bought;
  big:   --big places (default 100,000), the same admissions;
  late:  --big places, admitted through 50,000: all but the last 20 admissions expired (a line that has
         been moving for a long time), 5 of the running ones bought.
Each has 10 places still to number (joins that raced the draw: since the draw a join numbers itself).

Then, interleaved over the sales, --repeats times each (median kept), every step inside a transaction
that is rolled back so each repeat starts from the same state:
  - one admission step (sales.queue._admit_sale, admitting one second's worth: admitPerSecond = 20),
    and its parts: admitted_not_bought, the line's last position, line_summary;
  - one numbering step (sales.queue._number_sale: the 10 unnumbered places), and the draw of a
    pre-queue of 100 and of 100,000 places (the first numbering step after the start);
  - GET /api/v1/flashsales/<id>/queue and GET /api/v1/health through Django's handler in-process
    (django.test.Client, Redis cache, no server): wall and CPU microseconds per request.
During the reads a thread of its own publishes the open lines every 0.5 s as the sale clock does
(sales.line_cache.publish), without admitting anyone, so the lines stay as seeded. Then, unless
--no-http, it starts the service as bench/herd.py does (deploy/run: HAProxy -> gunicorn), lets every
reader read their place once (their token and a waiting place cached, as in a line whose pages poll),
drives GET /api/v1/health and GET .../queue of the big and small sales with wrk (bench/herd.lua, each
request with the next buyer's token), and prints every figure beside its target:
  step on the big (and late) sale / step on the small one: <= 1.5 (the same cost, within the noise of a
  shared machine);
  GET .../queue: req/s >= 0.5x and p99 <= 2x the trivial endpoint's in the same run (within 2x trivial).
Results go to bench/results/queue-step-*.json.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import herd  # noqa: E402  (shares the environment helpers)

ADMITTED_THROUGH = 60
EXPIRED = 40
BOUGHT = 5
UNNUMBERED = 10
RATE = 20
LATE_ADMITTED_THROUGH = 50_000
GET_TOKENS = 2000


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", type=int, default=100_000, help="places of the big sales")
    parser.add_argument("--small", type=int, default=100, help="places of the small sale")
    parser.add_argument("--repeats", type=int, default=60, help="timed repeats of each step per sale")
    parser.add_argument("--requests", type=int, default=1000, help="in-process requests per endpoint")
    parser.add_argument("--no-http", action="store_true", help="skip the wrk phases against the service")
    parser.add_argument("--topology", choices=["haproxy", "gunicorn"], default="haproxy")
    parser.add_argument("--server", choices=["gunicorn"], default="gunicorn")
    parser.add_argument("--duration", type=int, default=8, help="seconds of load per wrk phase")
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--gunicorn-threads", type=int, default=4)
    parser.add_argument("--request-log", choices=["true", "false"], default="true")
    parser.add_argument("--database", default="flashsale_bench_queue")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/7", help="flushed at the start: use a spare db")
    parser.add_argument("--label", default="")
    return parser.parse_args()


# --- seeding ---------------------------------------------------------------------------------


def seed_users(count: int) -> list[int]:
    """`count` buyers in one statement (a fixed unusable password: none of them signs in)."""
    from django.db import connection

    from accounts.models import User

    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {User._meta.db_table}
                    (email, name, password, is_staff, is_superuser, is_active, date_joined)
                SELECT 'line' || g || '@bench.example', 'Buyer ' || g, '!', false, false, true, now()
                FROM generate_series(1, %s) g""",
            [count],
        )
    return list(User.objects.filter(email__startswith="line").order_by("id").values_list("id", flat=True))


def seed_sale(name: str, user_ids: list[int], *, places: int, admitted_through: int) -> int:
    """A started waiting-room sale whose first `places` buyers hold numbered places (plus UNNUMBERED
    still to number): admitted through `admitted_through`, the last ADMITTED_THROUGH - EXPIRED of
    those admissions running and BOUGHT of them bought, the earlier ones expired."""
    from django.db import connection
    from django.utils import timezone

    from sales.models import FlashSale, Purchase, QueuePlace

    now = timezone.now()
    running = ADMITTED_THROUGH - EXPIRED
    sale = FlashSale.objects.create(
        name=name,
        original_stock=1000,
        current_stock=1000 - BOUGHT,
        start_time=now - timedelta(minutes=10),
        end_time=now + timedelta(hours=2),
        waiting_room=True,
        admit_per_second=RATE,
        queue_drawn_at=now - timedelta(minutes=10),
        admitted_through=admitted_through,
        admitted_at=now,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {QueuePlace._meta.db_table}
                    (sale_id, user_id, joined_at, pre_queue, position, numbered_at, admitted_until)
                SELECT %(sale)s, u.id, %(now)s, false,
                       CASE WHEN u.n <= %(places)s THEN u.n END,
                       CASE WHEN u.n <= %(places)s THEN %(now)s END,
                       CASE WHEN u.n <= %(through)s - %(running)s THEN %(now)s - interval '5 minutes'
                            WHEN u.n <= %(through)s THEN %(now)s + interval '100 seconds' END
                FROM unnest(%(users)s::bigint[]) WITH ORDINALITY AS u(id, n)
                ORDER BY u.n""",
            {
                "sale": sale.pk,
                "now": now,
                "places": places,
                "through": admitted_through,
                "running": running,
                "users": user_ids[: places + UNNUMBERED],
            },
        )
    first_running = admitted_through - running
    Purchase.objects.bulk_create(
        Purchase(sale=sale, user_id=user_id, quantity=1) for user_id in user_ids[first_running : first_running + BOUGHT]
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {QueuePlace._meta.db_table}")
    return sale.pk


def write_tokens(user_ids: list[int], path: Path) -> list[str]:
    from rest_framework.authtoken.models import Token

    existing = dict(Token.objects.filter(user_id__in=user_ids).values_list("user_id", "key"))
    Token.objects.bulk_create(
        Token(user_id=user_id, key=Token.generate_key()) for user_id in user_ids if user_id not in existing
    )
    keys = dict(Token.objects.filter(user_id__in=user_ids).values_list("user_id", "key"))
    path.write_text("\n".join(keys[user_id] for user_id in user_ids) + "\n")
    return [keys[user_id] for user_id in user_ids]


# --- timing ----------------------------------------------------------------------------------


def rolled_back(step):
    """Seconds `step()` takes inside a transaction rolled back afterwards."""
    from django.db import transaction

    with transaction.atomic():
        started = time.perf_counter()
        step()
        elapsed = time.perf_counter() - started
        transaction.set_rollback(True)
    return elapsed


def step_timings(sales: dict[str, int], repeats: int) -> dict[str, dict[str, float]]:
    """Median milliseconds of each step per sale, the sales interleaved so load drifts hit all alike."""
    from django.db.models import Max
    from django.utils import timezone

    from sales import queue
    from sales.models import FlashSale, QueuePlace

    def admission(sale_id):
        elapsed = 0.0

        def step():
            nonlocal elapsed
            moment = timezone.now()
            # One second since the last step: the step admits admitPerSecond places.
            FlashSale.objects.filter(pk=sale_id).update(admitted_at=moment - timedelta(seconds=1))
            started = time.perf_counter()
            admitted = queue._admit_sale(sale_id, moment=moment)
            elapsed = time.perf_counter() - started
            assert admitted == RATE, admitted

        rolled_back(step)
        return elapsed

    def numbering(sale_id):
        def step():
            assert queue._number_sale(sale_id, moment=timezone.now()) == UNNUMBERED

        return rolled_back(step)

    steps = {
        "admission step": admission,
        "  admitted_not_bought": lambda sale_id: rolled_back(
            lambda: queue.admitted_not_bought(sale_id, moment=timezone.now())
        ),
        "  last position (Max)": lambda sale_id: rolled_back(
            lambda: QueuePlace.objects.filter(sale_id=sale_id).aggregate(last=Max("position"))
        ),
        "  line_summary": lambda sale_id: rolled_back(lambda: queue.line_summary(FlashSale.objects.get(pk=sale_id))),
        "numbering step (10 places)": numbering,
    }
    samples: dict[str, dict[str, list[float]]] = {step: {name: [] for name in sales} for step in steps}
    for _ in range(repeats):
        for step, run in steps.items():
            for name, sale_id in sales.items():
                samples[step][name].append(run(sale_id))
    return {
        step: {name: statistics.median(values) * 1000 for name, values in by_sale.items()}
        for step, by_sale in samples.items()
    }


def draw_timings(user_ids: list[int], sizes: dict[str, int]) -> dict[str, float]:
    """Milliseconds of the first numbering step after the start (the draw) of a pre-queue of each
    size, rolled back: it numbers every place, so it grows with the pre-queue; what matters is the
    cost per place and that the clock's tick is not held for long."""
    from django.db import connection
    from django.utils import timezone

    from sales import queue
    from sales.models import FlashSale, QueuePlace

    figures = {}
    for name, size in sizes.items():
        elapsed: list[float] = []

        def draw(size=size, elapsed=elapsed):
            now = timezone.now()
            sale = FlashSale.objects.create(
                name="draw",
                original_stock=1000,
                start_time=now - timedelta(seconds=1),
                end_time=now + timedelta(hours=1),
                waiting_room=True,
            )
            with connection.cursor() as cursor:
                cursor.execute(
                    f"""INSERT INTO {QueuePlace._meta.db_table} (sale_id, user_id, joined_at, pre_queue)
                        SELECT %s, u.id, %s, true FROM unnest(%s::bigint[]) AS u(id)""",
                    [sale.pk, now, user_ids[:size]],
                )
            started = time.perf_counter()
            assert queue._number_sale(sale.pk, moment=now) == size
            elapsed.append(time.perf_counter() - started)

        rolled_back(draw)
        figures[name] = elapsed[0] * 1000
    return figures


def in_process_reads(sales: dict[str, int], tokens: dict[str, str], requests: int) -> dict[str, dict[str, float]]:
    """Wall and CPU microseconds per request through Django's handler (one thread, no server)."""
    from django.test import Client

    cases = {"GET /api/v1/health": ("/api/v1/health", tokens["small"])}
    for name in sales:
        cases[f"GET queue ({name})"] = (f"/api/v1/flashsales/{sales[name]}/queue", tokens[name])
    clients = {
        case: Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_HOST="127.0.0.1") for case, (_, token) in cases.items()
    }
    for case, (path, _) in cases.items():
        for _ in range(50):  # warm: token cached, pools open
            answer = clients[case].get(path)
            assert answer.status_code == 200, (case, answer.content)
    figures: dict[str, dict[str, list[float]]] = {case: {"wall": [], "cpu": []} for case in cases}
    for _ in range(5):  # rounds, interleaved; the best round is kept
        for case, (path, _) in cases.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(requests // 5):
                clients[case].get(path)
            figures[case]["wall"].append((time.perf_counter() - wall) / (requests // 5) * 1e6)
            figures[case]["cpu"].append((time.process_time() - cpu) / (requests // 5) * 1e6)
    return {case: {kind: min(values) for kind, values in kinds.items()} for case, kinds in figures.items()}


class LinePublisher(threading.Thread):
    """The sale clock's publishing step (sales.line_cache.publish, every 0.5 s as the clock ticks),
    without its admission step: the servers run no clock in a bench, and admitting would change the
    lines between phases. A waiting buyer's read is answered from what it publishes."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopped = threading.Event()

    def run(self) -> None:
        from django.db import connection
        from django.utils import timezone

        from sales import line_cache, selectors

        try:
            while not self.stopped.is_set():
                line_cache.publish(selectors.open_waiting_rooms(timezone.now()))
                self.stopped.wait(0.5)
        finally:
            connection.close()


def read_every_place(url: str, tokens_file: Path) -> None:
    """One read of their place by every buyer in `tokens_file`, 16 at a time."""
    import httpx

    tokens = tokens_file.read_text().split()
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(16) as pool:
        answers = pool.map(lambda token: client.get(url, headers={"Authorization": f"Token {token}"}), tokens)
        statuses = {answer.status_code for answer in answers}
    assert statuses == {200}, statuses


def http_phases(args, database_url: str, sales: dict[str, int], token_files: dict[str, Path]) -> dict:
    process, base_url = herd.start_servers(args, herd.server_env(args, database_url), args.topology)
    phases: dict[str, dict] = {}
    try:
        print(f"  service at {base_url} ({args.topology}); {args.connections} connections", flush=True)
        herd.wrk(args, base_url + "/api/v1/health", "get", duration=2, connections=50)
        for name in ("big", "small"):
            # Warm: every buyer of the phase has read their place once (their token and a waiting
            # place's position cached), as in a line where buyers poll their place.
            read_every_place(f"{base_url}/api/v1/flashsales/{sales[name]}/queue", token_files[name])
        herd.drain(base_url)
        for phase, (url, script) in {
            "trivial": (base_url + "/api/v1/health", ("get",)),
            "queue_big": (
                f"{base_url}/api/v1/flashsales/{sales['big']}/queue",
                ("queue", str(token_files["big"]), str(sales["big"]), str(args.threads)),
            ),
            "queue_small": (
                f"{base_url}/api/v1/flashsales/{sales['small']}/queue",
                ("queue", str(token_files["small"]), str(sales["small"]), str(args.threads)),
            ),
        }.items():
            result = herd.wrk(args, url, *script)
            result["drain_s"] = herd.drain(base_url)
            phases[phase] = result
            print(
                f"  {phase}: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms, {result['counts']}", flush=True
            )
    finally:
        herd.stop_servers(process)
    return phases


# --- the run ---------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    herd.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    if not args.no_http:
        herd.need_tool("wrk", "wrk")
        if args.topology == "haproxy":
            herd.need_tool("haproxy", "haproxy")
    started = time.monotonic()
    database_url = herd.prepare_database(args)
    # The in-process reads go through Django's host check, and without the limits, as the servers run.
    os.environ.update(ALLOWED_HOSTS="127.0.0.1,localhost", RATELIMIT_ENABLE="false")
    herd.setup_django(database_url, args.redis)
    workdir = Path(tempfile.mkdtemp(prefix="flashsale-queue-bench-"))

    print(f"seeding {args.big + UNNUMBERED} buyers and three waiting-room sales...", flush=True)
    user_ids = seed_users(args.big + UNNUMBERED)
    sales = {
        "small": seed_sale("small line", user_ids, places=args.small, admitted_through=ADMITTED_THROUGH),
        "big": seed_sale("big line", user_ids, places=args.big, admitted_through=ADMITTED_THROUGH),
        "late": seed_sale("big line, late", user_ids, places=args.big, admitted_through=LATE_ADMITTED_THROUGH),
    }
    # Readers of their place: the small line's buyers, and buyers spread over the big line.
    stride = max(1, args.big // GET_TOKENS)
    readers = {
        "small": user_ids[: args.small],
        "big": user_ids[: args.big : stride],
        "late": user_ids[: args.big : stride],
    }
    token_files = {name: workdir / f"tokens-{name}.txt" for name in readers}
    tokens = {name: write_tokens(ids, token_files[name])[0] for name, ids in readers.items()}

    print(f"timing the steps ({args.repeats} repeats each, medians)...", flush=True)
    steps = step_timings(sales, args.repeats)
    print("timing the draw of a pre-queue...", flush=True)
    draws = draw_timings(user_ids, {"small": args.small, "big": args.big})
    print(f"timing reads in-process ({args.requests} requests each)...", flush=True)
    publisher = LinePublisher()
    publisher.start()
    try:
        reads = in_process_reads(sales, tokens, args.requests)
        phases = {} if args.no_http else http_phases(args, database_url, sales, token_files)
    finally:
        publisher.stopped.set()
        publisher.join()

    def ratio(a, b):
        return a / b if b else float("nan")

    targets: dict[str, bool] = {}
    print()
    print(
        f"waiting room with a long line - {args.big} places against {args.small}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    print(f"{'step (median ms)':26} {'small':>8} {'big':>8} {'late':>8} {'big/small':>10} {'late/small':>10}")
    for step, by_sale in steps.items():
        big_ratio, late_ratio = ratio(by_sale["big"], by_sale["small"]), ratio(by_sale["late"], by_sale["small"])
        print(
            f"{step:26} {by_sale['small']:8.2f} {by_sale['big']:8.2f} {by_sale['late']:8.2f} "
            f"{big_ratio:10.2f} {late_ratio:10.2f}"
        )
        if not step.startswith(" "):
            key = step.split(" (")[0].replace(" ", "_")
            targets[f"{key}_big_vs_small <= 1.5"] = big_ratio <= 1.5
            targets[f"{key}_late_vs_small <= 1.5"] = late_ratio <= 1.5
    print(
        f"{'draw of the pre-queue':26} {draws['small']:8.0f} {draws['big']:8.0f} {'':8} "
        f"{ratio(draws['big'], draws['small']):10.1f}  ms; per 1000 places: "
        f"{draws['small'] / args.small * 1000:.0f} (small), {draws['big'] / args.big * 1000:.0f} (big)"
    )
    print()
    health = reads["GET /api/v1/health"]
    print(f"{'in-process request':26} {'wall us':>8} {'CPU us':>8} {'x health wall':>14} {'x health CPU':>13}")
    for case, figures in reads.items():
        print(
            f"{case:26} {figures['wall']:8.0f} {figures['cpu']:8.0f} {ratio(figures['wall'], health['wall']):14.2f} "
            f"{ratio(figures['cpu'], health['cpu']):13.2f}"
        )
    if phases:
        trivial = phases["trivial"]
        print()
        print(
            f"{'wrk, same run':26} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'x trivial':>10} {'p99 x':>7}  responses"
        )
        for phase, result in phases.items():
            rps_ratio, p99_ratio = ratio(result["rps"], trivial["rps"]), ratio(result["p99_ms"], trivial["p99_ms"])
            print(
                f"{phase:26} {result['rps']:8.0f} {result['p50_ms']:8.1f} {result['p99_ms']:8.1f} "
                f"{rps_ratio:10.2f} {p99_ratio:7.2f}  {result['counts']}"
            )
            if phase != "trivial":
                targets[f"{phase}_rps_vs_trivial >= 0.5"] = rps_ratio >= 0.5
                targets[f"{phase}_p99_vs_trivial_p99 <= 2.0"] = p99_ratio <= 2.0
        targets["no_5xx"] = all(result["errors_5xx"] == 0 for result in phases.values())
        targets["every_read_answered_200"] = all(set(result["counts"]) == {"200"} for result in phases.values())
    print()
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'NOT met'}")

    result = {
        "when": datetime.now(UTC).isoformat(),
        "label": args.label,
        "args": {k: v for k, v in vars(args).items() if k != "pg_cli"},
        "load_average_1m": os.getloadavg()[0],
        "steps_ms": steps,
        "draw_ms": draws,
        "in_process_us": reads,
        "phases": phases,
        "targets": targets,
        "elapsed_s": time.monotonic() - started,
    }
    out = herd.RESULTS_DIR / f"queue-step-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nresults: {out.relative_to(herd.PROJECT_DIR)} ({result['elapsed_s']:.0f}s)")
    return 0 if not phases or targets["no_5xx"] else 1


if __name__ == "__main__":
    sys.exit(main())
