"""gunicorn's threaded worker, receiving each request in full before a thread takes it, answering
its own errors in JSON. Written for gunicorn 27.0 (`gunicorn.workers.gthread.ThreadWorker`);
tests/test_gunicorn_worker.py fails if that version's behaviour it relies on changes.

Why: gthread hands a connection to a pool thread as soon as its first byte arrives, and the thread
reads the headers and body with blocking reads. A client that sends its body one byte every few
seconds holds that thread for as long as it likes (each read is within GUNICORN_READ_TIMEOUT), so
as many slow clients as threads stopped the service (issue 25: 8 such clients froze
`./scripts/serve`). Here the worker's own poller, which holds no thread per connection, collects
the request head and body (Content-Length or chunked) without blocking, within
GUNICORN_REQUEST_TIMEOUT seconds for the whole request, and hands the complete bytes to gunicorn's
parser. Too slow: `408`; a body over API_MAX_BODY_BYTES under /api/ (DATA_UPLOAD_MAX_MEMORY_SIZE
elsewhere): `413`, answered at once without reading it. Behind deploy/run, HAProxy does the same
in front (`option http-buffer-request`).

gunicorn writes the errors it finds itself (a request line over limit_request_line is 414, headers
over the limits 431, a malformed request 400) as HTML; `write_error` below answers them in the
API's error shape instead.
"""

import json
import os
import selectors
import socket
import time
from functools import partial

from gunicorn import http, util
from gunicorn.workers.gthread import ThreadWorker

# Codes of core/error_codes.py and messages (as deploy/errors/ says them to HAProxy's clients)
# for the statuses gunicorn and this worker answer.
_ERRORS = {
    400: ("bad_request", "The request is malformed."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    408: ("request_timeout", "The request was not received in time."),
    413: ("payload_too_large", "The request body is too large."),
    414: ("bad_request", "The request line is too long."),
    417: ("bad_request", "The request's expectation cannot be met."),
    431: ("bad_request", "The request headers are too large."),
    500: ("internal_error", "An unexpected error occurred."),
    501: ("bad_request", "The request's transfer coding is not supported."),
}
# A head that has not ended after this many bytes goes to gunicorn's parser, whose limits
# (limit_request_line, limit_request_fields, limit_request_field_size) refuse it.
_MAX_HEAD_BYTES = 64 * 1024


def write_error(sock, status_int, reason, mesg):
    """gunicorn.util.write_error, in the API's error shape (`mesg` is gunicorn's text: not echoed,
    it may quote the client's bytes)."""
    code, message = _ERRORS.get(status_int, _ERRORS[400])
    body = json.dumps(
        {"success": False, "error": {"code": code, "message": message, "details": {}}}, separators=(",", ":")
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


# gunicorn's workers call util.write_error by module attribute: every error gunicorn answers in
# this process is JSON.
util.write_error = write_error


def _max_body(path: bytes) -> int:
    from django.conf import settings

    return settings.API_MAX_BODY_BYTES if path.startswith(b"/api/") else settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def request_end(data: bytes | bytearray) -> tuple[str, int]:
    """Whether `data` holds a complete request: ("complete", end), ("incomplete", 0),
    ("too_large", 0) for a body over the limit, or ("parse", 0): let gunicorn's parser decide
    (it refuses what it cannot read, quickly, since the bytes are there)."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return ("parse", 0) if len(data) > _MAX_HEAD_BYTES else ("incomplete", 0)
    lines = bytes(data[:head_end]).split(b"\r\n")
    parts = lines[0].split(b" ")
    path = parts[1] if len(parts) == 3 else b""
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            if not value.isdigit():
                return "parse", 0
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
    body_start = head_end + 4
    limit = _max_body(path)
    if not chunked:
        if length > limit:
            return "too_large", 0
        end = body_start + length
        return ("complete", end) if len(data) >= end else ("incomplete", 0)
    # Chunked: size line, data, CRLF, ..., a zero size line, trailers, an empty line.
    position, size_total = body_start, 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return ("too_large", 0) if len(data) - body_start > limit + _MAX_HEAD_BYTES else ("incomplete", 0)
        try:
            size = int(bytes(data[position:line_end]).split(b";")[0].strip(), 16)
        except ValueError:
            return "parse", 0
        size_total += size
        if size_total > limit:
            return "too_large", 0
        if size == 0:
            if data[line_end + 2 : line_end + 4] == b"\r\n":
                return "complete", line_end + 4
            trailers_end = data.find(b"\r\n\r\n", line_end)
            return ("complete", trailers_end + 4) if trailers_end >= 0 else ("incomplete", 0)
        position = line_end + 2 + size + 2
        if position > len(data):
            return "incomplete", 0


class BufferingThreadWorker(ThreadWorker):
    """ThreadWorker whose poller receives each request in full before a pool thread parses it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.request_timeout = float(os.environ.get("GUNICORN_REQUEST_TIMEOUT", "5"))
        self.receiving: list = []  # connections whose request is arriving

    def enqueue_req(self, conn):
        if getattr(conn, "request_received", False):
            conn.request_received = False
            super().enqueue_req(conn)
            return
        # Bytes already read past the previous request on a kept-alive connection come first.
        conn.incoming = bytearray(conn.parser.unreader.take_buffered() if conn.parser is not None else b"")
        conn.receive_deadline = time.monotonic() + self.request_timeout
        conn.sent_continue = False
        conn.sock.setblocking(False)
        if not self._received(conn):
            self._start_receiving(conn)

    def _start_receiving(self, conn):
        self.receiving.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_request_bytes, conn))

    def _on_request_bytes(self, conn, client):
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away mid-request
            self._stop_receiving(conn)
            self._drop(conn)
            return
        conn.incoming += data
        # Off the poller before a thread may take the socket; back on if more is to come.
        self._stop_receiving(conn)
        if not self._received(conn):
            self._start_receiving(conn)

    def _received(self, conn) -> bool:
        """Hand `conn` to a thread (or answer it) if its request is complete; False to read on."""
        state, _end = request_end(conn.incoming)
        if state == "incomplete":
            if not conn.sent_continue and b"\r\n\r\n" in conn.incoming:
                head = bytes(conn.incoming[: conn.incoming.find(b"\r\n\r\n")]).lower()
                if b"\r\nexpect: 100-continue" in head:
                    # The client waits for this before it sends the body; gunicorn may send its
                    # own later, which clients ignore (RFC 9110, 15.2).
                    conn.sent_continue = True
                    try:
                        conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                    except OSError:
                        pass
            return False
        if state == "too_large":
            self._answer(conn, 413, "Payload Too Large")
            return True
        conn.sock.setblocking(True)
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(conn.incoming))
        conn.incoming = bytearray()
        conn.data_ready = True
        conn.request_received = True
        self.enqueue_req(conn)
        return True

    def _stop_receiving(self, conn):
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        if conn in self.receiving:
            self.receiving.remove(conn)

    def _answer(self, conn, status: int, reason: str):
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(1)
            write_error(conn.sock, status, reason, "")
            # The rest of the body is not read: stop receiving so the close is not a reset.
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._drop(conn)

    def _drop(self, conn):
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self):
        super().murder_pending()
        now = time.monotonic()
        for conn in [conn for conn in self.receiving if conn.receive_deadline <= now]:
            self._stop_receiving(conn)
            if conn.incoming:
                self._answer(conn, 408, "Request Timeout")
            else:  # an idle kept-alive connection that sent nothing: close it quietly
                self._drop(conn)
