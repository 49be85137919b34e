"""Django's SQLite backend with the write lock queued in Python inside one process.

SQLite has one writer at a time. Threads that find the write lock taken (BEGIN IMMEDIATE) wait in
SQLite's busy handler, which sleeps 1, 2, 5, ... up to 100 ms between tries and is woken by
nothing, so under a herd the lock sits free while the waiters sleep and a waiter can lose every
race until its timeout ("database is locked", a 500); with the stock backend, gunicorn's threads on
one process bought half as fast as a single thread (docs/performance.md "Measured reasons behind
the code"). Here the threads of one process queue on a Python lock first, which hands over at once;
only other processes (a second gunicorn worker, `manage.py` commands) still meet SQLite's busy
handler. The wait is bounded by the same `timeout` and fails the way SQLite would. The hooks it
wraps are Django's private ones: core/patches.py.
"""

from django.db.backends.sqlite3 import base

from core.patches import QueuedSQLiteWrites


class DatabaseWrapper(QueuedSQLiteWrites, base.DatabaseWrapper):
    pass
