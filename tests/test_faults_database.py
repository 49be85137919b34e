"""The database goes away: every API call is a prompt 503 in the error shape; it comes back by itself.

The server runs against a throwaway PostgreSQL cluster the test owns, stops (immediate mode, like
a crash) and starts again; the machine's shared PostgreSQL is never touched.
"""

import httpx
import psycopg
import pytest

from harness.faults import manage, postgres_cluster, server_process, wait_for

pytestmark = pytest.mark.postgres

PASSWORD = "correct-horse-battery"
# "Within a few seconds": a generous bound, enforced as the client's timeout (a slower answer
# fails the test with a timeout error), not a latency measurement.
PROMPT = 8.0
SESSION_COOKIE = {"Cookie": "sessionid=" + "x" * 32}


def assert_service_unavailable(response: httpx.Response):
    assert response.status_code == 503, (response.request.url, response.text)
    body = response.json()
    assert body["success"] is False
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "service_unavailable"
    assert "Traceback" not in response.text


@pytest.fixture(scope="module")
def cluster():
    """A migrated database on a cluster of our own; each test leaves it running."""
    with postgres_cluster() as pg:
        pg.create_database("flashsale")
        # REQUEST_LOG on: the request log middleware runs after the view, outside DRF's handler.
        env = {"DATABASE_URL": pg.url("flashsale"), "RATELIMIT_ENABLE": "false", "REQUEST_LOG": "true"}
        manage("migrate", "--noinput", **env)
        yield pg, env


def test_with_the_database_down_every_api_call_is_a_prompt_503_and_the_server_recovers(cluster):
    pg, env = cluster
    sale_id = int(
        manage("createsale", "--name", "Outage", "--stock", "50", "--starts-in", "0", "--duration", "3600", **env)
    )

    with server_process(**env) as server, httpx.Client(base_url=server.base_url, timeout=PROMPT) as client:
        client.post("/api/v1/auth/register", json={"name": "Ada", "email": "ada@example.com", "password": PASSWORD})
        token = client.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD}).json()[
            "data"
        ]["token"]
        auth = {"Authorization": f"Token {token}"}
        order = {"saleId": sale_id, "quantity": 1}
        assert client.post("/api/v1/flashsales/purchase", json=order, headers=auth).status_code == 201
        assert client.get("/api/v1/health/ready").status_code == 200

        pg.stop()

        calls = [
            ("POST", "/api/v1/flashsales/purchase", {"json": order, "headers": auth}),
            (
                "POST",
                "/api/v1/flashsales/purchase",
                {"json": order, "headers": {**auth, "Idempotency-Key": "during-outage"}},
            ),
            ("GET", "/api/v1/flashsales/active", {"headers": auth}),
            ("GET", f"/api/v1/flashsales/{sale_id}", {"headers": auth}),
            ("GET", "/api/v1/flashsales/", {"headers": auth}),
            ("GET", f"/api/v1/leaderboard?saleId={sale_id}", {}),
            ("POST", "/api/v1/auth/login", {"json": {"email": "ada@example.com", "password": PASSWORD}}),
            (
                "POST",
                "/api/v1/auth/register",
                {"json": {"name": "Bo", "email": "bo@example.com", "password": PASSWORD}},
            ),
            ("POST", "/api/v1/auth/logout", {"headers": auth}),
            # A browser's session cookie (the admin, the live page) must not turn the 503 into a 500.
            ("GET", f"/api/v1/leaderboard?saleId={sale_id}", {"headers": SESSION_COOKIE}),
            ("GET", "/api/v1/flashsales/active", {"headers": {**auth, **SESSION_COOKIE}}),
        ]
        for _ in range(2):  # the first round finds the outage, the second is answered from that knowledge
            for method, path, options in calls:
                assert_service_unavailable(client.request(method, path, **options))
        assert client.get("/api/v1/health").status_code == 200  # liveness: the process is fine
        not_ready = client.get("/api/v1/health/ready")
        assert_service_unavailable(not_ready)
        assert not_ready.json()["error"]["details"]["checks"]["database"]["status"] == "down"
        assert server.alive

        pg.start()

        wait_for(
            lambda: client.get("/api/v1/health/ready").status_code == 200, 30, "readiness after the database returned"
        )
        assert client.post("/api/v1/flashsales/purchase", json=order, headers=auth).status_code == 201
        # The keyed purchase refused during the outage was not stored: its retry buys.
        retried = client.post(
            "/api/v1/flashsales/purchase", json=order, headers={**auth, "Idempotency-Key": "during-outage"}
        )
        assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
        assert server.alive

    with psycopg.connect(pg.url("flashsale")) as db:
        original, current = db.execute(
            "SELECT original_stock, current_stock FROM sales_flashsale WHERE id = %s", [sale_id]
        ).fetchone()
        units, count = db.execute(
            "SELECT COALESCE(SUM(quantity), 0), COUNT(*) FROM sales_purchase WHERE sale_id = %s", [sale_id]
        ).fetchone()
    assert (count, units) == (3, 3)
    assert original - current == units


def test_a_server_started_while_the_database_is_unreachable_answers_503_not_a_crash(cluster):
    pg, env = cluster
    pg.stop()

    with server_process(**env) as server, httpx.Client(base_url=server.base_url, timeout=PROMPT) as client:
        assert_service_unavailable(client.get("/api/v1/leaderboard"))
        unknown_token = {"Authorization": "Token " + "a" * 40}  # not cached: authentication needs the database
        assert_service_unavailable(client.get("/api/v1/flashsales/active", headers=unknown_token))
        assert_service_unavailable(client.get("/api/v1/flashsales/active", headers={**unknown_token, **SESSION_COOKIE}))
        assert_service_unavailable(client.get("/api/v1/health/ready"))

        pg.start()

        wait_for(
            lambda: client.get("/api/v1/health/ready").status_code == 200, 30, "readiness after the database came up"
        )
        assert client.get("/api/v1/leaderboard").status_code == 200


SHOW_DEAD_LINK_SETTINGS = """
from django.db import connection
with connection.cursor() as cursor:
    for name in ("tcp_user_timeout", "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count"):
        cursor.execute("SHOW " + name)
        print("setting", name, cursor.fetchone()[0])
    print("setting libpq_keepalives_idle", connection.connection.info.get_parameters().get("keepalives_idle"))
"""


def dead_link_settings(**env: str) -> dict[str, str]:
    """What a server process's database session runs with (its log lines left out)."""
    output = manage("shell", "-c", SHOW_DEAD_LINK_SETTINGS, **env)
    return dict(line.split()[1:] for line in output.splitlines() if line.startswith("setting "))


@pytest.mark.django_db
def test_sessions_tell_the_server_to_drop_a_dead_client_within_seconds_and_0_leaves_it_to_the_system():
    # A cut-off host's session would otherwise hold its locks until the kernel's keepalive (2 h);
    # tests/test_cluster.py shows the sale's row lock released about 5 s after the cut.
    assert dead_link_settings() == {
        "tcp_user_timeout": "5000",
        "tcp_keepalives_idle": "2",
        "tcp_keepalives_interval": "1",
        "tcp_keepalives_count": "3",
        "libpq_keepalives_idle": "2",
    }

    # libpq passes a 0 on to the kernel, which refuses it for a keepalive: such a setting is left
    # to the system instead, and the connection still opens.
    zeros = {"DB_TCP_USER_TIMEOUT_MS": "0", "DB_KEEPALIVES_IDLE": "0", "DB_KEEPALIVES_INTERVAL": "0"}
    system = dead_link_settings(**zeros)
    assert system["tcp_keepalives_count"] == "3"
    assert system["tcp_user_timeout"] == "0" and system["tcp_keepalives_idle"] != "2"
    assert system["libpq_keepalives_idle"] == "None"
