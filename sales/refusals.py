"""Who tried to buy and was refused, per sale: the drop dashboard's conversion and refusals by code.

A purchase is recorded by its row; a refusal leaves nothing in the database, and must not: the herd
after a sell-out is nearly all refusals, answered from the cache (sales.fastpath) precisely so they
never reach the database. So refusals are tallied in the cache instead, one command per refusal:
how many of each error code, and the set of buyers refused. Buyers who bought are counted from
their purchases, so "buyers who tried" is the union of both (`read`).

The tally is a statistic, never a rule: a cache that is down or evicts the keys makes the dashboard
undercount, and never fails or slows a purchase. On Redis a refusal is handed to one thread per
process that sends it after the answer, so the request keeps its one cache round trip
(core/prefetch.py), with every other refusal waiting by then in one call per sale; a backlog past
`BACKLOG` is dropped rather than held in memory.

The hook is one middleware (`RefusalTallyMiddleware`), outside every layer that answers a purchase
(the gate's fast path, DRF, the idempotency layer), so the purchase code carries no line of it.
"""

import itertools
import json
import logging
import os
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, UnreadablePostError
from django_redis.cache import RedisCache

from core.error_codes import ErrorCode
from core.errors import body_not_received, error_code_of
from core.ids import MAX_ID
from sales.purchase import purchase_paths

logger = logging.getLogger("flashsale.refusals")

# Long enough to read a finished drop's figures the next days; each later refusal extends it.
TALLY_SECONDS = 7 * 24 * 3600
# Refusals of a sale that exists: the database or the gate (which only knows sales it read) gave
# them. Others (validation, rate limits, an unknown id) could name any id, and every id tallied
# holds keys for TALLY_SECONDS: a buyer must not be able to fill Redis with made-up sales.
TALLIED_CODES = frozenset(
    {
        ErrorCode.SOLD_OUT.value,
        ErrorCode.SALE_NOT_ACTIVE.value,
        ErrorCode.INSUFFICIENT_STOCK.value,
        ErrorCode.USER_LIMIT_REACHED.value,
        # A paused sale's refusal, when the registry has it (issue 24's pause and resume).
        "sale_paused",
    }
)

# One EVALSHA per sale for the refusals the tally thread found waiting: each code's counter grows by
# its count and the refused buyers join the set, both kept alive together. ARGV: the lifetime, the
# number of codes, (code, count) pairs, then the buyers.
_RECORD_SCRIPT = """
local codes = tonumber(ARGV[2])
for i = 0, codes - 1 do
  redis.call('HINCRBY', KEYS[1], ARGV[3 + 2 * i], ARGV[4 + 2 * i])
end
redis.call('SADD', KEYS[2], unpack(ARGV, 3 + 2 * codes))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""


class _Script:
    """The recording script, registered once per process (its SHA is computed once)."""

    def __init__(self, source: str):
        self.source = source
        self._script: Any = None

    def script(self, client: Any) -> Any:
        if self._script is None:
            self._script = client.register_script(self.source)
        return self._script


_RECORD = _Script(_RECORD_SCRIPT)


def _codes_key(sale_id: int) -> str:
    return f"sales:refusals:{sale_id}"


def _buyers_key(sale_id: int) -> str:
    return f"sales:refused-buyers:{sale_id}"


@dataclass(frozen=True)
class RefusalTally:
    """What the cache knows of a sale's refusals."""

    by_code: dict[str, int]
    # Refused buyers who hold no purchase of the sale: they tried and left with nothing.
    refused_only: int


BACKLOG = 10_000
_backlog: queue.Queue[tuple[int, int, str]] = queue.Queue(maxsize=BACKLOG)
_sender_pid: int | None = None
_sender_lock = threading.Lock()


def record(*, sale_id: int, user_id: int, code: str) -> None:
    """Count one refusal of `user_id`'s purchase of `sale_id` with `code`. Never raises, never waits
    for Redis: there it is sent by this process's tally thread."""
    if not isinstance(caches["default"], RedisCache):
        _send(sale_id=sale_id, user_id=user_id, code=code)
        return
    try:
        _backlog.put_nowait((sale_id, user_id, code))
    except queue.Full:
        return  # Redis is slower than the herd: a lost count, not a buyer held or memory grown
    _start_sender()


def _start_sender() -> None:
    global _sender_pid
    if _sender_pid == os.getpid():
        return
    with _sender_lock:
        # Per process: a worker forked from a parent that had a thread does not have it.
        if _sender_pid != os.getpid():
            threading.Thread(target=_send_forever, name="refusal-tally", daemon=True).start()
            _sender_pid = os.getpid()


# Refusals sent in one round trip at most; a herd queues them faster than one call per refusal
# could send them (docs/performance.md "Python a purchase runs"). Far below Lua's argument limit.
BATCH = 500


def _send_forever() -> None:
    while True:
        batch = [_backlog.get()]
        while len(batch) < BATCH:
            try:
                batch.append(_backlog.get_nowait())
            except queue.Empty:
                break
        try:
            _send_batch(batch)
        finally:
            for _ in batch:
                _backlog.task_done()


def flush(timeout: float) -> None:
    """Let this process's counts reach the cache before it is read (staff reads are rare)."""
    deadline = time.monotonic() + timeout
    while _backlog.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.01)


def _send(*, sale_id: int, user_id: int, code: str) -> None:
    _send_batch([(sale_id, user_id, code)])


def _send_batch(batch: list[tuple[int, int, str]]) -> None:
    by_sale: dict[int, tuple[Counter[str], set[int]]] = {}
    for sale_id, user_id, code in batch:
        codes, buyers = by_sale.setdefault(sale_id, (Counter(), set()))
        codes[code] += 1
        buyers.add(user_id)
    backend = caches["default"]
    for sale_id, (codes, buyers) in by_sale.items():
        try:
            if isinstance(backend, RedisCache):
                client = backend.client.get_client(write=True)
                # EVALSHA through the client's execute_command, so behind the cache's breaker.
                _RECORD.script(client)(
                    keys=[backend.client.make_key(_codes_key(sale_id)), backend.client.make_key(_buyers_key(sale_id))],
                    args=[TALLY_SECONDS, len(codes), *itertools.chain.from_iterable(codes.items()), *buyers],
                    client=client,
                )
            else:
                for sale, user_id, code in batch:
                    if sale == sale_id:
                        _record_in_django_cache(backend, sale_id=sale_id, user_id=user_id, code=code)
        except Exception:
            # The breaker (core/cache.py) logs the outage once; a lost count is not worth more.
            logger.debug("refusal not tallied", exc_info=True)


def read(*, sale_id: int, buyer_ids: list[int]) -> RefusalTally:
    """The sale's refusals by code, and how many refused buyers are not among `buyer_ids` (the
    buyers who bought). Empty when the cache cannot be read."""
    flush(timeout=1.0)
    try:
        backend = caches["default"]
        if isinstance(backend, RedisCache):
            return _read_from_redis(backend, sale_id=sale_id, buyer_ids=buyer_ids)
        return _read_from_django_cache(backend, sale_id=sale_id, buyer_ids=buyer_ids)
    except Exception:
        logger.warning("refusal tally unreadable", exc_info=True)
        return RefusalTally(by_code={}, refused_only=0)


def _read_from_redis(backend: Any, *, sale_id: int, buyer_ids: list[int]) -> RefusalTally:
    client = backend.client.get_client(write=False)
    codes_key, buyers_key = backend.client.make_key(_codes_key(sale_id)), backend.client.make_key(_buyers_key(sale_id))
    by_code = {code.decode(): int(count) for code, count in client.hgetall(codes_key).items()}
    refused = client.scard(buyers_key)
    also_bought = sum(client.smismember(buyers_key, buyer_ids)) if buyer_ids and refused else 0
    return RefusalTally(by_code=by_code, refused_only=refused - also_bought)


# Any other cache (the local-memory default): a counter per code and a marker per refused buyer.
# In-process calls, so several of them cost what one network round trip would.


def _code_key(sale_id: int, code: str) -> str:
    return f"sales:refusals:{sale_id}:{code}"


def _buyer_key(sale_id: int, user_id: int) -> str:
    return f"sales:refused-buyer:{sale_id}:{user_id}"


def _refused_count_key(sale_id: int) -> str:
    return f"sales:refused-buyers-count:{sale_id}"


def _bump(backend: Any, key: str) -> None:
    if not backend.add(key, 1, timeout=TALLY_SECONDS):
        backend.incr(key)


def _record_in_django_cache(backend: Any, *, sale_id: int, user_id: int, code: str) -> None:
    _bump(backend, _code_key(sale_id, code))
    if backend.add(_buyer_key(sale_id, user_id), 1, timeout=TALLY_SECONDS):
        _bump(backend, _refused_count_key(sale_id))


def _read_from_django_cache(backend: Any, *, sale_id: int, buyer_ids: list[int]) -> RefusalTally:
    counts = backend.get_many([_code_key(sale_id, code) for code in TALLIED_CODES])
    by_code = {key.rsplit(":", 1)[1]: count for key, count in counts.items()}
    refused = backend.get(_refused_count_key(sale_id)) or 0
    also_bought = len(backend.get_many([_buyer_key(sale_id, user_id) for user_id in buyer_ids]))
    return RefusalTally(by_code=by_code, refused_only=refused - also_bought)


class RefusalTallyMiddleware:
    """Tallies every refused purchase by an identified buyer, whichever layer answered it.

    It reads the code the answer was built with (core.errors records it on the response) rather than hooking each layer
    that can refuse: the gate's fast path answers the herd after a sell-out before Django's views,
    DRF answers the rest, and both keep their own shape of the same error body. A replayed answer
    (Idempotency-Key) is the same attempt again, not counted twice.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or request.path_info not in purchase_paths():
            return self.get_response(request)
        # Read (and so keep) the body before the layers below consume its stream; they read it anyway.
        try:
            body = request.body
        except UnreadablePostError as unread:
            return body_not_received(unread)  # its stream is spent: no layer below could read it
        except RequestDataTooBig:
            body = b""  # refused before reading: the layers below answer it
        response = self.get_response(request)
        if 400 <= response.status_code < 500 and "Idempotent-Replayed" not in response:
            try:
                _tally(request, body, response)
            except Exception:  # a statistic never turns an answer into an error
                logger.warning("refusal not tallied", exc_info=True)
        return response


def _tally(request: HttpRequest, body: bytes, response: HttpResponse) -> None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return  # not a buyer: no token, or a wrong one
    # The code the answer was built with (core.errors records it), never read back from its body.
    code = error_code_of(response)
    if code is None or code.value not in TALLIED_CODES:
        return
    try:
        sale_id = json.loads(body)["saleId"]
    except (ValueError, TypeError, KeyError):
        return  # not a plain purchase body
    if type(sale_id) is not int or not 1 <= sale_id <= MAX_ID:
        return
    record(sale_id=sale_id, user_id=user.pk, code=code.value)
