"""gunicorn settings for the HTTP side of the production topology (see deploy/run and README
"Performance"). Every value can be overridden from the environment or the command line."""

import logging
import os
import socket
import struct

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8001")
# gunicorn serves plain Django HTTP an order of magnitude faster than Daphne on this 2-core machine
# (docs/performance.md "Performance"). gthread workers overlap the PostgreSQL round trips of
# purchases and keep connections alive for HAProxy: in bench/herd.py they committed more purchases
# than 4 sync workers and served more health checks too, and of the splits measured on 2 cores
# (2x8, 4x4, 4x8, 8x2) 4 processes x 8 threads served every phase best (docs/performance.md
# "Measured reasons behind the code").
# GUNICORN_THREADS=1 gives plain sync workers. Each thread may hold one pooled DB connection.
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# flashsale's gthread worker receives each request in full (headers and body) in its poller before a
# thread takes it, so slow clients hold no thread (core/gunicorn_worker.py).
worker_class = "core.gunicorn_worker.BufferingThreadWorker" if threads > 1 else "sync"
# Idle keep-alive connections (from HAProxy) are closed after this many seconds.
keepalive = 5
# A herd connects all at once; the kernel queues connections until a worker accepts them.
backlog = int(os.environ.get("LISTEN_BACKLOG", "2048"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 10
# Import Django once in the master; workers fork with the app already loaded.
preload_app = True
accesslog = None  # flashsale's RequestLogMiddleware already writes one line per request.
errorlog = "-"

# Slow headers (slowloris). gthread reads a request with blocking reads in a worker thread, and
# gunicorn bounds only the wait for the first byte (5 s, then the connection goes back to the
# poller): a client that sends part of its headers and stops holds a thread for good: a handful
# of such connections froze a small gunicorn (docs/performance.md "Measured reasons behind the code").
# gunicorn has no header-read timeout setting, so the kernel's receive timeout does it: set on the
# listening socket, every accepted socket inherits it (Linux), and a read that waits longer fails
# and closes the connection. It bounds each wait, not the whole header: a client trickling a byte
# every few seconds is cut off by HAProxy's `timeout http-request` in front (deploy/haproxy.cfg).
_read_timeout = int(os.environ.get("GUNICORN_READ_TIMEOUT", "5"))


def when_ready(server):
    if _read_timeout > 0:
        for listener in server.LISTENERS:
            listener.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", _read_timeout, 0))


class _NoReadTimeoutTracebacks(logging.Filter):
    """gthread logs a timed-out read as "Socket error processing request." with a traceback:
    one per slow client would let an attacker flood the error log too."""

    def filter(self, record):
        return not (record.exc_info and isinstance(record.exc_info[1], (BlockingIOError, TimeoutError)))


def post_worker_init(worker):
    worker.log.error_log.addFilter(_NoReadTimeoutTracebacks())


# Header bounds. Behind deploy/run these are above HAProxy's (a request head fits its 16 KB buffer,
# 101 header lines, a URL of 8000 bytes: deploy/haproxy.cfg), so HAProxy refuses an oversized
# request first with its JSON error; facing clients (./scripts/serve) gunicorn refuses it, in JSON
# too (414 for the request line, 431 for the headers: core/gunicorn_worker.py).
limit_request_line = 8190  # gunicorn's most
limit_request_fields = 128
limit_request_field_size = 16384

# gunicorn 25+ opens a control socket at one fixed path per user ($HOME/.gunicorn/gunicorn.ctl), so
# every other gunicorn on the machine (tests, bench/, ./scripts/serve beside deploy/run) would take
# it over. Nothing here uses gunicornc.
control_socket_disable = True


def child_exit(server, worker):
    # With PROMETHEUS_MULTIPROC_DIR (core/metrics.py) a dead worker's live gauges must not be
    # summed into the host's figures; its counters stay, so totals never go backwards.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
