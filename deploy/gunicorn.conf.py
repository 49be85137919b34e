"""gunicorn settings for the HTTP side of the production topology (see deploy/run and README
"Performance"). Every value can be overridden from the environment or the command line."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8001")
# gunicorn serves plain Django HTTP an order of magnitude faster than Daphne on this 2-core machine
# (README "Performance"). gthread workers (4 processes x 4 threads) overlap the PostgreSQL round
# trips of purchases and keep connections alive for HAProxy: in bench/herd.py they committed
# 78-105 purchases/s against 53 for 4 sync workers, and served more health checks too.
# GUNICORN_THREADS=1 gives plain sync workers. Each thread may hold one pooled DB connection.
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread" if threads > 1 else "sync"
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


def child_exit(server, worker):
    # With PROMETHEUS_MULTIPROC_DIR (flashsale/metrics.py) a dead worker's live gauges must not be
    # summed into the host's figures; its counters stay, so totals never go backwards.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
