"""A waiting buyer's place read from the cache, in the request's one round trip, without the database.

Every buyer in a line reads their place now and then (`GET .../queue`); with a long line those reads
are most of a waiting room's traffic. A waiting place's answer follows from two facts: its position,
which never changes once numbered, and the line's state (how far admission reached, the rate, whether
the sale is still open), which changes only with the sale clock's admission step or a staff edit.

- The sale clock writes every open line's state after its admission step (`publish`, each tick) and
  drops the entries of lines that closed since its last tick; entries expire after LINE_CACHE_SECONDS,
  so a stopped clock leaves nothing to read. An entry records the sale gate's generation, which every
  staff change bumps after commit (sales.gate.forget): an entry from before an edit is not used.
- A place's position is cached by the reads that learn it from the database (`remember_place`),
  keyed by the reading request's token.
- A read answers from the cache (`cached_place`) only for a place the line has not reached
  (position > admittedThrough): waiting, or closed. A place admission reached is the database's to
  answer (its admission's end is recorded there), and so is anything missing or out of date.

A cached answer is at most one clock tick behind the database (the clock writes after committing its
step): a buyer just admitted may read "waiting, 0 ahead of you" for that long. The WebSocket's
`queue_advanced` tells the same move at the same moment.
"""

import logging
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache

from sales import gate, queue
from sales.models import FlashSale

logger = logging.getLogger("flashsale.gate")

# The sale ids this process published last tick, so the next can drop the lines that closed.
_published: set[int] = set()


def _line_key(sale_id: int) -> str:
    return f"sales:line:{sale_id}"


def _place_key(sale_id: int, token: str) -> str:
    # By the request's token, not its user: a request names its token before anything is read, so
    # the place is read in the same round trip as the token (a token belongs to one user for good).
    return f"sales:line-place:{sale_id}:{token}"


def cache_keys(sale_id: int, token: str) -> list[str]:
    """What `cached_place` needs from the cache, so a request can read it with its other keys."""
    return [_line_key(sale_id), _place_key(sale_id, token), *gate.cache_keys(sale_id)]


def publish(rooms: Iterable[FlashSale]) -> None:
    """The sale clock's step: the state of every open line in `rooms` (read after the admission step
    committed), and nothing for the lines published before that are no longer open."""
    rooms = list(rooms)
    sale_ids = {sale.pk for sale in rooms}
    try:
        generations = cache.get_many([gate.generation_key(sale_id) for sale_id in sale_ids])
        cache.set_many(
            {
                _line_key(sale.pk): {
                    "generation": generations.get(gate.generation_key(sale.pk), 0),
                    # Plain fields, as every cache entry here: an entry outlives a deploy of the code.
                    "line": asdict(queue.LineState.of(sale)),
                }
                for sale in rooms
            },
            timeout=settings.LINE_CACHE_SECONDS,
        )
        closed = _published - sale_ids
        if closed:
            cache.delete_many([_line_key(sale_id) for sale_id in closed])
    except Exception:  # the reads fall back to the database, which is always right
        logger.warning("waiting room: could not publish the lines to the cache", exc_info=True)
        return
    _published.clear()
    _published.update(sale_ids)


def remember_place(*, sale_id: int, token: str, position: int | None) -> None:
    """Cache a numbered place's position (it never changes) for reads with `token`, its buyer's; a
    place in the pre-queue has none yet."""
    if position is None:
        return
    try:
        cache.set(_place_key(sale_id, token), position, timeout=settings.LINE_CACHE_PLACE_SECONDS)
    except Exception:
        logger.warning("waiting room: could not cache a place", exc_info=True)


def cached_place(found: dict[str, Any], *, sale_id: int, token: str, moment: datetime) -> queue.PlaceView | None:
    """The place a get_many of `cache_keys` answers for, when the line has not reached it; else None
    (the database answers)."""
    entry = found.get(_line_key(sale_id))
    position = found.get(_place_key(sale_id, token))
    if entry is None or position is None or entry["generation"] != found.get(gate.generation_key(sale_id), 0):
        return None
    try:
        line = queue.LineState(**entry["line"])
    except (KeyError, TypeError):  # written by another version of this code: the database answers
        return None
    if position <= line.admitted_through:
        return None
    return queue.place_view(line, position=position, admitted_until=None, moment=moment, created=False)
