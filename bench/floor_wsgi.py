"""A measuring instrument, never served to users: the framework-free floor for bench/herd.py.

One WSGI function with no framework, no middleware, no cache and no channel layer, run by bench/herd.py
under the same gunicorn settings as the service (deploy/gunicorn.conf.py, same workers and threads)
on the same database, answering the paths bench/herd.lua drives:

- GET  /api/v1/health: the trivial endpoint (no I/O at all);
- POST /api/v1/flashsales/purchase: the naive purchase transaction through a psycopg pool, the
  three statements the service's ORM path sends (conditional UPDATE of the stock, SELECT of the
  stock and the buyer's holding, INSERT of the purchase) and COMMIT, with the per-user cap; a
  refused UPDATE is explained by one read, from the database every time.

What it leaves out (authentication beyond a token -> user id lookup cached per process, input
validation beyond the two integers, logging, pushes) is the point: the gap between it and the
service on the same run is the cost of the service's Python, not of PostgreSQL.

    DATABASE_URL=postgres://... gunicorn -c deploy/gunicorn.conf.py bench.floor_wsgi:application
"""

import json
import os
import threading

from psycopg_pool import ConnectionPool

CAP = int(os.environ.get("MAX_UNITS_PER_USER", os.environ.get("MAX_PURCHASE_QUANTITY", "5")))

TAKE = """UPDATE sales_flashsale SET current_stock = current_stock - %(q)s, version = version + 1
  WHERE id = %(sale)s AND start_time <= now() AND end_time > now() AND current_stock >= %(q)s"""
STOCK_AND_HOLDING = """SELECT current_stock, version, COALESCE((SELECT SUM(quantity) FROM sales_purchase
  WHERE sale_id = %(sale)s AND user_id = %(user)s), 0) FROM sales_flashsale WHERE id = %(sale)s"""
INSERT = """INSERT INTO sales_purchase (user_id, sale_id, quantity, created_at)
  VALUES (%(user)s, %(sale)s, %(q)s, now()) RETURNING id, created_at"""
WHY_NOT = """SELECT current_stock, start_time <= now() AND end_time > now() FROM sales_flashsale
  WHERE id = %(sale)s"""
USER_OF_TOKEN = "SELECT user_id FROM authtoken_token WHERE key = %s"

_lock = threading.Lock()
_pool: ConnectionPool | None = None
_pool_pid: int | None = None
_users: dict[str, int] = {}


def _connections() -> ConnectionPool:
    """One pool per worker process, opened after gunicorn forked it (preload_app)."""
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            size = int(os.environ.get("GUNICORN_THREADS", "4"))
            # autocommit: conn.transaction() then sends BEGIN ... COMMIT itself (without it, the
            # token lookup would open an implicit transaction and the block would be a savepoint).
            _pool = ConnectionPool(
                os.environ["DATABASE_URL"], min_size=size, max_size=size, kwargs={"autocommit": True}, open=True
            )
            _pool_pid = os.getpid()
        return _pool


def _answer(start_response, status: str, body: dict):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def _refuse(start_response, status: str, code: str):
    return _answer(start_response, status, {"success": False, "error": {"code": code, "message": code, "details": {}}})


def _purchase(environ, start_response):
    token = environ.get("HTTP_AUTHORIZATION", "").removeprefix("Token ")
    try:
        body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        args = {"sale": int(body["saleId"]), "q": int(body["quantity"])}
    except (ValueError, KeyError, TypeError):
        return _refuse(start_response, "400 Bad Request", "validation_error")
    if not 1 <= args["q"] <= CAP:
        return _refuse(start_response, "400 Bad Request", "validation_error")
    with _connections().connection() as conn:
        user = _users.get(token)
        if user is None:
            row = conn.execute(USER_OF_TOKEN, (token,)).fetchone()
            if row is None:
                return _refuse(start_response, "401 Unauthorized", "authentication_failed")
            user = _users[token] = row[0]
        args["user"] = user
        with conn.transaction():
            if conn.execute(TAKE, args).rowcount == 0:
                row = conn.execute(WHY_NOT, args).fetchone()
                if row is None:
                    return _refuse(start_response, "404 Not Found", "sale_not_found")
                stock, live = row
                code = "sale_not_active" if not live else "sold_out" if stock == 0 else "insufficient_stock"
                return _refuse(start_response, "409 Conflict", code)
            stock, _version, held = conn.execute(STOCK_AND_HOLDING, args).fetchone()
            if held + args["q"] > CAP:
                raise _Refused("user_limit_reached")  # leaving the block by an exception rolls back
            purchase_id, created_at = conn.execute(INSERT, args).fetchone()
    return _answer(
        start_response,
        "201 Created",
        {
            "success": True,
            "data": {
                "purchaseId": purchase_id,
                "saleId": args["sale"],
                "quantity": args["q"],
                "remainingStock": stock,
                "timestamp": created_at.isoformat(),
            },
        },
    )


class _Refused(Exception):
    pass


def application(environ, start_response):
    path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
    if path == "/api/v1/health" and method == "GET":
        return _answer(start_response, "200 OK", {"success": True, "data": {"status": "ok"}})
    if path == "/api/v1/flashsales/purchase" and method == "POST":
        try:
            return _purchase(environ, start_response)
        except _Refused as refusal:
            return _refuse(start_response, "409 Conflict", str(refusal))
    return _refuse(start_response, "404 Not Found", "not_found")
