"""gunicorn settings for the HTTP side of the production topology (see deploy/run and README
"Performance"). Every value can be overridden from the environment or the command line."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8001")
# Sync workers: one request at a time per process, no thread per request. On this 2-core machine
# the bench measured them well ahead of Daphne for plain Django HTTP (README "Performance").
# Purchases wait on PostgreSQL's commit, so a few more workers than cores keep the CPUs busy.
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
# GUNICORN_THREADS > 1 switches to gthread workers (threads overlap PostgreSQL round trips).
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
# A herd connects all at once; the kernel queues connections until a worker accepts them.
backlog = int(os.environ.get("LISTEN_BACKLOG", "2048"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 10
# Import Django once in the master; workers fork with the app already loaded.
preload_app = True
accesslog = None  # flashsale's RequestLogMiddleware already writes one line per request.
errorlog = "-"
