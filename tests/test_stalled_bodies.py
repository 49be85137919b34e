"""A request body that stops arriving is a 408 in the error shape, logged as one line (issue 25, item 5).

gunicorn's read timeout (GUNICORN_READ_TIMEOUT, deploy/gunicorn.conf.py) ends a read that waits too
long with an OSError, which Django raises as UnreadablePostError from wherever the body is read: DRF's
parser (login, register, purchase) or the purchase fast path's middleware. Both answered 500
`internal_error` and logged a traceback per request.
"""

import errno
import http.client
import json
import logging
import socket
import subprocess
from contextlib import contextmanager

import httpx
import pytest

from accounts.models import User
from harness.servers import PROJECT_DIR, free_port, server_env, stop, wait_until_healthy
from sales.models import FlashSale, Purchase
from tests.conftest import client_for
from tests.error_shape import assert_error_shape
from tests.factories import PASSWORD, SaleFactory, TokenFactory, UserFactory

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
PURCHASE = "/api/v1/flashsales/purchase"


class StalledBody:
    """The wsgi.input of a client that sent its headers and then stopped sending the body: the read
    fails as gunicorn's does when the socket's receive timeout (SO_RCVTIMEO) runs out."""

    def read(self, *args):
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    readline = read


def post_stalled(client, path: str, **headers):
    body = json.dumps({"email": "ada@example.com", "password": PASSWORD, "name": "Ada", "saleId": 1, "quantity": 1})
    return client.generic(
        "POST", path, body, content_type="application/json", **{"wsgi.input": StalledBody(), **headers}
    )


def warnings_and_worse(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


def assert_one_line_without_traceback(caplog) -> None:
    [record] = warnings_and_worse(caplog)
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "request body not received in full: BlockingIOError"
    assert record.exc_info is None


@pytest.mark.parametrize("path", [REGISTER, LOGIN])
def test_a_stalled_register_or_login_body_is_408_logged_once_and_changes_nothing(api, caplog, path):
    user_count = User.objects.count()

    response = post_stalled(api, path)

    body = assert_error_shape(response, 408, "request_timeout")
    assert body["error"]["message"] == "The request body was not received in time. Send it again, in full."
    assert_one_line_without_traceback(caplog)
    assert User.objects.count() == user_count


@pytest.mark.parametrize(
    "headers", [{}, {"HTTP_IDEMPOTENCY_KEY": "order-1"}], ids=["through-the-fast-path", "with-a-key"]
)
def test_a_stalled_purchase_body_is_408_logged_once_and_sells_nothing(caplog, headers):
    sale = SaleFactory(original_stock=10)
    buyer = client_for(UserFactory())
    buyer.get("/api/v1/flashsales/active")  # the token is cached: the fast path reads the body

    response = post_stalled(buyer, PURCHASE, **headers)

    assert_error_shape(response, 408, "request_timeout")
    assert_one_line_without_traceback(caplog)
    assert not Purchase.objects.exists()
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 10


# --- against a real gunicorn (deploy/gunicorn.conf.py) -------------------------------------------


@contextmanager
def gunicorn_logging_to(log_path, **env_overrides: str):
    """One worker, two threads, its stdout (the app's JSON log) and stderr (gunicorn's) in `log_path`."""
    port = free_port()
    env = server_env(**{"WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2", **env_overrides})
    command = [
        str(PROJECT_DIR / ".venv/bin/gunicorn"),
        "-c",
        "deploy/gunicorn.conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        "flashsale.wsgi:application",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_healthy(f"http://127.0.0.1:{port}", process)
            yield port
        finally:
            stop(process)


def send_half_a_body(port: int, path: str, token: str = "") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)  # a bound; the read timeout is 1 s
    auth = f"Authorization: Token {token}\r\n" if token else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
        "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"email": "ada@example.com", "pass')
    return sock


def answer_of(sock: socket.socket) -> tuple[int, dict]:
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
        return response.status, json.loads(response.read())
    finally:
        sock.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_gunicorn_answers_a_body_that_stalls_past_its_read_timeout_with_408_and_one_log_line(tmp_path):
    sale = SaleFactory(original_stock=10)
    token = TokenFactory().key
    log_path = tmp_path / "gunicorn.log"
    # Sync workers hand the socket to Django before the body is in (deploy/gunicorn.conf.py's threaded
    # worker buffers it and answers a stall itself, tests/test_attacks_bodies.py): Django's own answer.
    with gunicorn_logging_to(
        log_path, GUNICORN_THREADS="1", GUNICORN_READ_TIMEOUT="1", LOG_REPEAT_INTERVAL_SECONDS="0"
    ) as port:
        base_url = f"http://127.0.0.1:{port}"
        # The token in this worker's cache: the purchase's body is read by the fast path's middleware.
        assert httpx.get(
            f"{base_url}/api/v1/flashsales/{sale.pk}", headers={"Authorization": f"Token {token}"}
        ).is_success
        answers = [answer_of(send_half_a_body(port, path, token)) for path in (LOGIN, REGISTER, PURCHASE)]
        health = httpx.get(f"{base_url}/api/v1/health", timeout=30)
    log = log_path.read_text()

    assert [status for status, _ in answers] == [408] * 3
    assert [body["error"]["code"] for _, body in answers] == ["request_timeout"] * 3
    assert health.status_code == 200
    assert "Traceback" not in log
    app_lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    # One line each (repeats are not summarised here: LOG_REPEAT_INTERVAL_SECONDS=0).
    assert [line["message"] for line in app_lines] == ["request body not received in full: BlockingIOError"] * 3
    assert User.objects.count() == 1  # the buyer's; login and register changed nothing
    assert not Purchase.objects.exists()
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 10


def test_the_schema_documents_408_request_timeout_on_every_operation_that_reads_a_body(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    def codes(path: str, method: str = "post") -> set[str]:
        answer = schema["paths"][path][method]["responses"]["408"]["content"]["application/json"]["schema"]
        return set(answer["properties"]["error"]["properties"]["code"]["enum"])

    assert codes("/api/v1/auth/register") == {"request_timeout"}
    assert codes("/api/v1/auth/login") == {"request_timeout"}
    assert codes("/api/v1/flashsales/purchase") == {"request_timeout"}
