"""Two app hosts behind HAProxy on shared PostgreSQL and Redis (harness/cluster.py), through real faults:
an app host killed, an app host cut off from db (and a transaction it left open), Redis restarted
empty, each in the middle of a keyed purchase herd with WebSocket watchers; and a waiting-room sale
whose buyers join on both hosts and buy through lb once the leading clock admits them.

The module starts one cluster (about 10 s) and every test leaves both app hosts in rotation; the
figures the tests print are in docs/cluster.md (run with -s to see them).

After each fault: original - current == the units stored, nobody above the cap, every 201 a client
received is exactly one stored purchase of that client, and `manage.py auditsales` finds nothing.
"""

import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.cluster import ADDRESSES, APP_HOSTS, HTTP_PORT, Cluster
from harness.faults import wait_for

pytestmark = [
    pytest.mark.cluster,
    # Network namespaces need root (CI is root, and .ci/run installs iproute2 and haproxy).
    pytest.mark.skipif(
        os.geteuid() != 0 and not os.environ.get("CI"), reason="network namespaces need root (runs in CI)"
    ),
]


@pytest.fixture(scope="module")
def cluster():
    assert shutil.which("ip") and shutil.which("haproxy"), "the cluster tests need iproute2 and haproxy"
    with Cluster() as running:
        yield running


@pytest.fixture
def healthy_cluster(cluster):
    """Every app host in rotation before and after a test, whatever the test did to it."""
    yield cluster
    for host in APP_HOSTS:
        cluster.reconnect_to_db(host)
    if cluster.in_ns("db", "redis-cli", "-h", ADDRESSES["db"], "ping", check=False).stdout.strip() != "PONG":
        cluster.restart_redis_empty()
    for host in APP_HOSTS:
        if not cluster.processes.get(host):
            cluster.start_app(host)
        cluster.wait_until_in_rotation(host)


# 280 keyed attempts, one unit each, on 250 units: 70 buyers, 4 attempts each (the cap is 5).
HERD = ("--stock", "250", "--users", "70", "--attempts", "4", "--watchers", "20")


def herd_with_fault(cluster: Cluster, fault, after: int, *args: str) -> dict:
    """Run a keyed herd from the client host; inject `fault` once `after` answers are in."""
    process = cluster.client_process("herd", *args)
    injected = False
    lines = []
    try:
        for line in process.stdout:
            lines.append(line.strip())
            if not injected and line.startswith("progress ") and int(line.split()[1]) >= after:
                fault()
                injected = True
        process.wait(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, f"the herd failed: {cluster.log('client', 'client')[-3000:]}"
    assert injected, f"the herd ended before the fault was injected: {lines[-3:]}"
    return json.loads(lines[-1])


def assert_every_attempt_bought_or_sold_out(result: dict) -> None:
    """Every keyed attempt of HERD got its final answer: a purchase, or an honest sold_out."""
    assert set(result["statuses"]) <= {"201", "409"}, result
    assert set(result["codes"]) <= {"sold_out"}, result
    assert result["statuses"]["201"] == result["sold"] == 250, result
    assert result["current"] == 0, result


def assert_invariants(cluster: Cluster, result: dict) -> None:
    assert result["original"] - result["current"] == result["sold"], result
    assert result["max_units_per_user"] <= result["cap"], result
    # Every 201 received is exactly one stored purchase, of the buyer who received it.
    assert result["received_201"] == result["distinct_201_ids"] == result["stored_purchases"], result
    assert result["mismatched_201"] == [], result
    assert "OK: no violations" in cluster.manage("app2", "auditsales")


def test_an_app_host_killed_mid_herd_loses_nothing_and_its_sockets_move_to_the_other(healthy_cluster):
    cluster = healthy_cluster
    result = herd_with_fault(cluster, lambda: cluster.kill_app("app1"), 60, *HERD)

    # Keyed retries through lb gave every attempt an answer: a purchase or an honest sold_out.
    assert_every_attempt_bought_or_sold_out(result)
    # Sockets that were on app1 came back through lb (to app2) and show the final stock.
    assert result["watcher_reconnects"] > 0, result
    assert result["watcher_stocks"] == {"0": 20}, result
    assert_invariants(cluster, result)
    assert cluster.ready("app1") is None  # it really is gone


def ask(cluster: Cluster, host: str, path: str) -> dict:
    """GET `path` from `host`'s gunicorn, asked from lb as HAProxy's checks are. An answer slower
    than 30 s counts as none (status None). The bound tells "answers" from "hangs" (TCP's own
    retransmissions take about 15 minutes to give up); the latencies are printed, not asserted."""
    result = cluster.in_ns(
        "lb",
        "curl",
        "-s",
        "-m",
        "30",
        "-w",
        "\n%{http_code} %{time_total}",
        f"http://{ADDRESSES[host]}:{HTTP_PORT}{path}",
        check=False,
        timeout=60,
    )
    body, _, tail = result.stdout.rpartition("\n")
    status, seconds = tail.split() if tail.count(" ") == 1 else ("000", "0")
    answer = {"path": path, "status": None if status == "000" else int(status), "seconds": float(seconds)}
    if answer["status"] == 503:
        error = json.loads(body)["error"]
        answer["code"] = error["code"]
        answer["database"] = error["details"].get("checks", {}).get("database", {}).get("status")
    return answer


def cut_off_and_back(cluster: Cluster, host: str) -> dict:
    """Cut `host` off from db; ask it directly until it has answered 503 for a while and lb has
    drained it; restore the link; wait until it is ready and in rotation again. Seconds are
    counted from the cut."""
    cut = time.monotonic()

    def since() -> float:
        return round(time.monotonic() - cut, 2)

    def lb_says(state: str) -> float:
        wait_for(lambda: set(cluster.lb_status(host).values()) == {state}, 60, f"lb to mark {host} {state}", 0.05)
        return since()

    cluster.cut_from_db(host)
    report = {"answers": []}
    with ThreadPoolExecutor(1) as watcher:
        drained = watcher.submit(lb_says, "DOWN")
        # Readiness, and a read that needs the database (the public leaderboard).
        while since() < 60:
            for path in ("/api/v1/health/ready", "/api/v1/leaderboard"):
                report["answers"].append({**ask(cluster, host, path), "at": since()})
            refusals = [answer for answer in report["answers"] if answer["status"] == 503]
            if drained.done() and len(refusals) >= 4:
                break
            time.sleep(0.25)
        report["drained"] = drained.result()
    cluster.reconnect_to_db(host)
    report["reconnected"] = since()
    wait_for(lambda: cluster.ready(host) == 200, 60, f"{host} to be ready again", 0.05)
    report["ready_again"] = since()
    report["in_rotation_again"] = lb_says("UP")
    return report


def test_an_app_host_cut_off_from_the_database_mid_herd_answers_503_is_drained_and_comes_back(healthy_cluster):
    cluster = healthy_cluster
    with ThreadPoolExecutor(1) as background:
        fault = []

        def cut():  # in the background: the herd goes on meanwhile
            fault.append(background.submit(cut_off_and_back, cluster, "app1"))

        result = herd_with_fault(cluster, cut, 60, *HERD)
        report = fault[0].result(timeout=180)
    print(json.dumps(result))
    print(json.dumps({key: value for key, value in report.items() if key != "answers"}))
    print(json.dumps(report["answers"]))

    # Purchases in flight on app1 got a 503 (or no answer) and were retried with their key through
    # lb: every attempt ended in one purchase or an honest sold_out, none counted twice.
    assert_every_attempt_bought_or_sold_out(result)
    assert result["watcher_stocks"] == {"0": 20}, result
    assert_invariants(cluster, result)

    # app1 itself answered every request, within the bound: first while the cut had not yet been
    # noticed, then 503 service_unavailable, its readiness reporting the database down.
    answers = report["answers"]
    assert all(answer["status"] in {200, 503} for answer in answers), answers
    first_refusal = next(i for i, answer in enumerate(answers) if answer["status"] == 503)
    assert all(answer["status"] == 503 for answer in answers[first_refusal:]), answers
    assert {answer["code"] for answer in answers[first_refusal:]} == {"service_unavailable"}, answers
    readiness = [answer for answer in answers[first_refusal:] if answer["path"] == "/api/v1/health/ready"]
    assert readiness[-1]["database"] == "down", answers
    # lb drained it during the cut, and it came back by itself once the link did.
    assert report["drained"] < report["reconnected"] < report["ready_again"] <= report["in_rotation_again"]
    assert cluster.ready("app1") == 200
    assert ask(cluster, "app1", "/api/v1/leaderboard")["status"] == 200


def test_redis_restarting_empty_mid_herd_refuses_nothing_wrongly_and_sockets_get_pushes_again(healthy_cluster):
    cluster = healthy_cluster
    result = herd_with_fault(cluster, cluster.restart_redis_empty, 60, *HERD)
    print(json.dumps(result))

    # The token cache, the sale gate and the rate-limit counters were lost; the database answered
    # meanwhile: no 401, no 5xx, every unit sold, every refusal an honest sold_out.
    assert_every_attempt_bought_or_sold_out(result)
    assert_invariants(cluster, result)
    # The hubs lost their channel-layer groups with Redis and closed every socket; each page
    # reconnected to a fresh snapshot, was a member again, and got the pushes up to the last.
    assert result["watcher_reconnects"] == 20, result
    assert result["watchers_pushed_after_reconnect"] == 20, result
    assert result["watcher_stocks"] == {"0": 20}, result
    # The cache filled again from the database (tokens were looked up and cached anew).
    keys = cluster.in_ns("db", "redis-cli", "-h", ADDRESSES["db"], "--scan", "--pattern", "*auth:token:*").stdout
    assert keys.split(), "no token was cached again after the restart"


HOLD_ROW_LOCK = """
import time
from django.db import connection, transaction
with transaction.atomic():
    connection.cursor().execute("SELECT id FROM sales_flashsale WHERE id = %s FOR UPDATE", [{sale_id}])
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_transaction_a_cut_off_host_left_open_stops_blocking_the_sale_within_seconds(healthy_cluster):
    # The sale's row lock is what every purchase waits for. A host cut off mid-transaction can
    # neither commit nor roll back; its session (app settings DB_TCP_USER_TIMEOUT_MS and
    # DB_KEEPALIVES_*, sent to the server) must end so PostgreSQL rolls it back, not after the
    # kernel's default two hours of keepalive idle.
    cluster = healthy_cluster
    sale_id = cluster.manage("app2", "createsale", "--name", "Row lock", "--stock", "5", "--starts-in", "0").strip()
    holder = cluster._popen(
        "app1",
        "holder",
        [sys.executable, "manage.py", "shell", "-c", HOLD_ROW_LOCK.format(sale_id=sale_id)],
        cluster.app_env("app1"),
    )
    try:
        wait_for(lambda: "locked" in cluster.log("app1", "holder"), 30, "app1 to hold the sale's row lock")
        cluster.cut_from_db("app1")
        started = time.monotonic()
        # The lock a purchase takes first, from the database host itself; bounded by the timeout.
        locked = cluster.in_ns(
            "db",
            "psql",
            "-h",
            ADDRESSES["db"],
            "-U",
            "postgres",
            "-d",
            "flashsale",
            "-Atc",
            f"SELECT current_stock FROM sales_flashsale WHERE id = {sale_id} FOR UPDATE",
            timeout=30,
        )
        print(json.dumps({"row_lock_released_after": round(time.monotonic() - started, 2)}))
    finally:
        cluster.reconnect_to_db("app1")
        holder.kill()
        holder.wait(timeout=10)
    assert locked.stdout.strip() == "5", locked


def server_tracebacks(cluster) -> list[str]:
    """The tracebacks the app hosts' servers logged, to say what a 500 was."""
    found = []
    for host in APP_HOSTS:
        for server in ("gunicorn", "daphne"):
            log = cluster.log(host, server)
            found += [f"{host} {server}: {line[:4000]}" for line in log.splitlines() if "Traceback" in line]
    return found


def test_a_waiting_room_sale_through_lb_admits_in_order_at_the_rate_and_sells_only_to_admitted_buyers(healthy_cluster):
    # 40 buyers join on app1 and app2 alike; the leading clock (one of the two hosts') admits 10 a
    # second, never past the 30 units: the first 30 buy, the last 10 are never admitted.
    cluster = healthy_cluster
    stock, users, rate = 30, 40, 10
    result = cluster.client("queue", "--stock", str(stock), "--users", str(users), "--rate", str(rate))
    print(json.dumps({key: value for key, value in result.items() if key not in {"first_tries", "positions"}}))

    # Places taken on both hosts form one line: one place each, every position once.
    # Every buyer has a place, taken by a first join (201) or, after a 5xx, by its repeat (201, or
    # 200 when the failed attempt had taken it); no join was refused, none answered 500.
    assert sum(result["joins"].get(status, 0) for status in ("200", "201")) == users, result
    assert not any(failure.startswith("500") for failure in result["failed_joins"]), (
        result["failed_joins"],
        server_tracebacks(cluster),
    )
    assert result["positions"] == list(range(1, users + 1)) == result["join_positions"], result
    # Admission reached exactly the stock, in order, and stopped there.
    assert result["admitted_through"] == stock, result
    assert result["admitted_positions"] == list(range(1, stock + 1)), result
    # Never ahead of the rate: one clock admitted, not one per host.
    for seconds, through in result["steps"]:
        assert through <= math.floor(seconds * rate) + 1, result["steps"]
    # Every admitted buyer bought through lb; the others were refused not_admitted while stock
    # lasted, then told the line closed, and refused sold_out.
    assert result["statuses"] == {"201": stock, "409": users - stock}, result
    assert result["codes"] == {"sold_out": users - stock}, result
    assert result["bought_positions"] == list(range(1, stock + 1)), result
    never_admitted = {str(position) for position in range(stock + 1, users + 1)}
    assert {result["first_tries"][p][1] for p in never_admitted} == {"not_admitted"}, result["first_tries"]
    assert result["seen"].get("closed", 0) >= users - stock, result
    # A place's read through lb may meet a busy host's 503 (retried); never a 500.
    assert not any(reading.startswith("500") for reading in result["failed_reads"]), result["failed_reads"]
    # No oversell, every 201 one stored purchase, every purchase with a valid admission (auditsales).
    assert result["sold"] == result["original"] - result["current"] == stock, result
    assert_invariants(cluster, result)
