"""core/gunicorn_worker.py: what it relies on in gunicorn 27.0, and when a request is complete."""

import inspect

import gunicorn
import pytest
from gunicorn.http.unreader import Unreader
from gunicorn.workers import base, gthread

from core import gunicorn_worker
from core.gunicorn_worker import request_end


def test_gunicorns_internals_are_those_the_worker_was_written_for():
    assert gunicorn.__version__.startswith("27."), "re-read core/gunicorn_worker.py against this version"
    # Every connection reaches a thread through enqueue_req; the poller loop calls murder_pending.
    assert "self.enqueue_req(conn)" in inspect.getsource(gthread.ThreadWorker.accept)
    assert "self.enqueue_req(conn)" in inspect.getsource(gthread.ThreadWorker.on_client_socket_readable)
    assert "self.murder_pending()" in inspect.getsource(gthread.ThreadWorker.run)
    # A connection with data_ready and a parser skips the thread's wait and the parser's creation.
    assert "not conn.data_ready" in inspect.getsource(gthread.ThreadWorker.handle)
    assert "if self.parser is None" in inspect.getsource(gthread.TConn.init)
    assert hasattr(Unreader, "take_buffered") and hasattr(Unreader, "unread")
    # Errors are written through the module attribute this module replaces.
    assert "util.write_error(client, status_int, reason, mesg)" in inspect.getsource(base.Worker.handle_error)
    assert base.util.write_error is gunicorn_worker.write_error


HEAD = b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n", ("complete", 40)),
        (b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n", ("incomplete", 0)),
        (HEAD + b"Content-Length: 4\r\n\r\nab", ("incomplete", 0)),
        (HEAD + b"Content-Length: 4\r\n\r\nabcdGET", ("complete", len(HEAD) + 25)),
        (HEAD + b"Content-Length: 8193\r\n\r\n", ("too_large", 0)),
        (HEAD + b"Content-Length: x\r\n\r\n", ("parse", 0)),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n", ("incomplete", 0)),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n", ("complete", len(HEAD) + 44)),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2001\r\n", ("too_large", 0)),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", ("parse", 0)),
        (b"GET /" + b"a" * 70000, ("parse", 0)),
    ],
)
def test_a_request_is_complete_when_its_head_and_body_are_in(data, expected, settings):
    settings.API_MAX_BODY_BYTES = 8192

    assert request_end(data) == expected
