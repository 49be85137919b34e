"""/metrics: Prometheus figures that add up across gunicorn workers and Daphne processes, for token holders only."""

import json
import random
import signal
import string
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from harness.faults import redis_server
from harness.servers import PROJECT_DIR, daphne_server, free_port, server_env, wait_until_healthy
from sales.metrics import purchase_route
from sales.models import FlashSale, Purchase
from tests.factories import SaleFactory, TokenFactory, UserFactory

PURCHASE = "/api/v1/flashsales/purchase"
TOKEN = "metrics-test-token"
LONG_SECRET_KEY = "metrics-test-secret-key-" + "x" * 60


def test_metrics_without_a_configured_token_is_a_json_404(client, settings):
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["success"] is False


def test_metrics_with_a_wrong_or_missing_token_is_a_json_403(client, settings):
    settings.METRICS_TOKEN = TOKEN
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": TOKEN}):
        response = client.get("/metrics", **headers)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"


def test_metrics_with_the_token_is_the_prometheus_exposition(client, settings):
    settings.METRICS_TOKEN = TOKEN
    client.get("/api/v1/health")
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b'flashsale_request_duration_seconds_count{method="GET",route="api/v1/health"}' in response.content


def exposition_series(client) -> dict[str, set[str]]:
    """{sample name of the request latency: label sets} from one in-process scrape."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            series.setdefault(sample.name, set()).add(repr(sorted(sample.labels.items())))
    return series


def test_made_up_methods_add_no_series_to_the_metrics(client, settings):
    settings.METRICS_TOKEN = TOKEN
    # 200 requests at once from one address: past RATELIMIT_GLOBAL they would all be 429s.
    settings.RATELIMIT_GLOBAL = "1000/s"
    rng = random.Random(25)
    # One of each kind first, so the "other" series exist before counting.
    for path in ("/api/v1/health", "/api/v1/no-such-thing", PURCHASE):
        client.generic("XFIRST", path)
    exposition_series(client)  # and the scrape's own series
    before = exposition_series(client)

    answers = Counter()
    for _ in range(200):
        method = "X" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=12))
        path = rng.choice(["/api/v1/health", "/api/v1/no-such-thing", PURCHASE, f"/api/v1/{method.lower()}"])
        answers[client.generic(method, path).status_code] += 1

    after = exposition_series(client)
    assert set(answers) <= {401, 404, 405}, answers  # refused, never a 500
    assert after.keys() == before.keys()
    assert sum(map(len, after.values())) == sum(map(len, before.values()))  # not one new series
    methods = {
        dict(eval(labels))["method"]  # noqa: S307 - our own repr of label items
        for labels in after["flashsale_request_duration_seconds_count"]
    }
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "other"}
    assert "other" in methods


def scrape(base_url: str) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} from one scrape."""
    response = httpx.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@contextmanager
def host_processes(metrics_dir: str):
    """One app host's HTTP and WebSocket processes as deploy/run starts them, sharing `metrics_dir`."""
    env = server_env(
        PROMETHEUS_MULTIPROC_DIR=metrics_dir,
        METRICS_TOKEN=TOKEN,
        SECRET_KEY=LONG_SECRET_KEY,
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="4",
    )
    http_port, ws_port = free_port(), free_port()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "deploy/gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{http_port}",
                "flashsale.wsgi:application",
            ],
            cwd=PROJECT_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-e",
                f"tcp:port={ws_port}:interface=127.0.0.1",
                "flashsale.asgi:application",
            ],
            cwd=PROJECT_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    urls = [f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{ws_port}"]
    try:
        for url, process in zip(urls, processes, strict=True):
            wait_until_healthy(url, process)
        yield urls
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_purchase_counters_scraped_from_any_process_equal_the_purchases_in_the_database():
    sale = SaleFactory(original_stock=50)
    tokens = [TokenFactory(user=user).key for user in UserFactory.create_batch(40)]
    # 3 attempts per user against 50 units: some buy, the rest are refused sold_out or
    # insufficient_stock, by the database or from the sale gate; every third one carries a key.
    attempts = [(tokens[i % 40], f"metrics-{i}" if i % 3 == 0 else None) for i in range(120)]

    with tempfile.TemporaryDirectory() as metrics_dir, host_processes(metrics_dir) as (http_url, ws_url):

        def buy(attempt):
            token, key = attempt
            headers = {"Authorization": f"Token {token}", **({"Idempotency-Key": key} if key else {})}
            response = httpx.post(
                f"{http_url}{PURCHASE}", json={"saleId": sale.pk, "quantity": 1}, headers=headers, timeout=30
            )
            return response.status_code, response.json()

        with connect(f"{ws_url.replace('http', 'ws')}/ws/sales/{sale.pk}/", origin=ws_url, open_timeout=10) as socket:
            socket.recv(timeout=10)  # the snapshot: the socket is accepted and counted
            with ThreadPoolExecutor(max_workers=8) as pool:
                answers = list(pool.map(buy, attempts))
            # A replay of a keyed attempt is counted as a replay, not as a second purchase.
            token, key = attempts[0]
            replay = httpx.post(
                f"{http_url}{PURCHASE}",
                json={"saleId": sale.pk, "quantity": 1},
                headers={"Authorization": f"Token {token}", "Idempotency-Key": key},
                timeout=30,
            )
            assert replay.headers.get("Idempotent-Replayed") == "true"

            from_gunicorn, from_daphne = scrape(http_url), scrape(ws_url)
            open_sockets = from_daphne["flashsale_open_websockets"]

    stored = Purchase.objects.filter(sale=sale).count()
    sale.refresh_from_db()
    statuses = Counter(status for status, _ in answers)
    assert statuses[201] == stored == 50 == sale.original_stock - sale.current_stock
    refused = Counter(body["error"]["code"] for status, body in answers if status != 201)

    for samples in (from_gunicorn, from_daphne):  # either process answers for the whole host
        purchases = {dict(labels)["code"]: value for labels, value in samples["flashsale_purchases_total"].items()}
        assert purchases.pop("purchased") == stored
        assert purchases.pop("replayed") == 1
        assert purchases == dict(refused)
        latency = samples["flashsale_request_duration_seconds_count"]
        assert latency[(("method", "POST"), ("route", purchase_route()))] == len(attempts) + 1
        gate_hits = sum(samples["flashsale_sale_gate_hits_total"].values())
        assert 0 < gate_hits <= refused["sold_out"] + refused.get("insufficient_stock", 0)
        assert "flashsale_db_pool_waits_total" in samples
        assert samples["flashsale_channel_layer_send_failures_total"][()] == 0
    # One socket open on the Daphne process, reported under its pid.
    assert sorted(open_sockets.values()).count(1.0) == 1 and sum(open_sockets.values()) == 1
    assert FlashSale.objects.filter(pk=sale.pk, current_stock=0).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_with_metrics_on_a_socket_is_still_closed_1013_when_its_daphne_loses_redis():
    # The open-socket gauge wraps the ASGI app; Daphne's protocol must stay reachable through
    # `send` (live/socket_limits.py), or the hub's "try again later" close silently does nothing.
    sale = SaleFactory(original_stock=5)
    with redis_server() as redis, tempfile.TemporaryDirectory() as metrics_dir:
        env = {
            "REDIS_URL": redis.url,
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
            "METRICS_TOKEN": TOKEN,
            "SECRET_KEY": LONG_SECRET_KEY,
        }
        with daphne_server(**env) as base_url:
            with connect(f"{base_url.replace('http', 'ws')}/ws/sales/{sale.pk}/", open_timeout=10) as socket:
                assert json.loads(socket.recv(timeout=10))["currentStock"] == 5
                assert sum(scrape(base_url)["flashsale_open_websockets"].values()) == 1
                redis.stop()
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        socket.recv(timeout=10)
            assert closed.value.rcvd.code == 1013
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 5
