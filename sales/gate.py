"""The purchase fast path: refuse a sold-out or not-live sale from the cache, before the database.

After a flash sale sells out, nearly every request of the herd is a refusal. Answering each one
with a refused UPDATE and a read costs a database round trip and a connection per attempt; the gate
answers it from one cache read instead, with no database access at all.

The gate only ever says "no", and only what the database itself said moments ago: the first refused
purchase records what the database read (`remember`), later ones replay it (`check`); the refusal is
named from those facts by sales.purchase.refusal, the same function that names the database's. Saying "yes" stays the
conditional UPDATE's job, so a lost, stale or unreachable cache can only send a request to the
database, never sell a unit that does not exist.

Every write that can make a refused purchase succeed (a restock, an edit of the window or stock,
ending, pausing or resuming a sale) bumps the sale's generation after commit (`forget`). An entry is valid only for the
generation that was current *before* the refusing read, so a refusal read from the database just
before a restock commits can never be replayed after it. Entries also expire after
`SALE_GATE_SECONDS` as a safety net for writes that bypass sales.services.

Each process keeps what it last read here for LOCAL_CACHE_MS (`known_here`, core.near_cache), so
the herd's refusals ask Redis nothing; `forget` drops that copy in this process at once and in the
others by a pub/sub message. A lost message can refuse a buyer for at most LOCAL_CACHE_MS after a
restock: never a sale of a unit that does not exist, since the copy too can only say "no".
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache

from core import prefetch
from core.near_cache import NearCache

logger = logging.getLogger("flashsale.gate")
_near = NearCache("gate")


@dataclass(frozen=True)
class Known:
    """What the database read about a sale when it refused a purchase for every buyer."""

    start_time: datetime
    end_time: datetime
    sold_out: bool
    paused: bool


def _entry_key(sale_id: int) -> str:
    return f"sales:gate:{sale_id}"


def generation_key(sale_id: int) -> str:
    """The sale's generation, which every change that could end a refusal bumps (`forget`)."""
    return f"sales:gate-generation:{sale_id}"


def cache_keys(sale_id: int) -> list[str]:
    """What `known_in` needs from the cache, so a caller can fetch it with other keys in one read."""
    return [_entry_key(sale_id), generation_key(sale_id)]


def check(*, sale_id: int) -> tuple[Known | None, int | None]:
    """What the gate knows about this sale, and its current generation to hand to `remember` if the
    database refuses; (None, None) when the cache cannot be read (then nothing is remembered either).
    """
    # Read at the start of the request with its other keys (core.prefetch), if it was planned:
    # still before the database's refusing read, which is all `remember` needs.
    found = prefetch.cached_many(cache_keys(sale_id))
    read_at = prefetch.read_at()
    if found is None or read_at is None:
        read_at = time.monotonic()
        try:
            found = cache.get_many(cache_keys(sale_id))
        except Exception:  # the cache is an optimisation: when it is down, the database answers
            logger.warning("sale gate: cache unreachable, asking the database", exc_info=True)
            return None, None
    generation: int = found.get(generation_key(sale_id), 0)  # forget() stores ints
    return known_in(found, sale_id=sale_id, read_at=read_at), generation


def known_in(found: dict[str, Any], *, sale_id: int, read_at: float) -> Known | None:
    """What `found` (a get_many of `cache_keys` that began at `read_at`, time.monotonic()) records
    for this sale, if it is still current; this process keeps a copy of it (`known_here`)."""
    entry = found.get(_entry_key(sale_id))
    if entry is None or entry["generation"] != found.get(generation_key(sale_id), 0):
        return None
    # Entries written before pauses existed have no "paused".
    known = Known(entry["start_time"], entry["end_time"], entry["sold_out"], entry.get("paused", False))
    _near.put(str(sale_id), known, read_at=read_at)
    return known


def known_here(sale_id: int) -> Known | None:
    """This process's copy of what the gate knew about the sale when the cache was last asked, if
    that was less than LOCAL_CACHE_MS ago and nothing invalidated it since (core.near_cache)."""
    return _near.get(str(sale_id))


def remember(*, sale_id: int, generation: int | None, known: Known) -> None:
    """Record what the database read when it refused a purchase for every buyer, so the next
    attempts skip the database. Only for `generation`, the one current before that read."""
    if generation is None:
        return
    entry = {
        "generation": generation,
        "sold_out": known.sold_out,
        "paused": known.paused,
        "start_time": known.start_time,
        "end_time": known.end_time,
    }
    try:
        cache.set(_entry_key(sale_id), entry, timeout=settings.SALE_GATE_SECONDS)
    except Exception:
        logger.warning("sale gate: cache unreachable, refusal not remembered", exc_info=True)


def forget(sale_id: int) -> None:
    """Invalidate whatever the gate knows about a sale. Call after the changing write commits."""
    key = generation_key(sale_id)
    try:
        # Generations never expire: an entry must not match a generation that was reset.
        cache.add(key, 0, timeout=None)
        cache.incr(key)
    except Exception:
        # Without the bump a stale refusal could be replayed until it expires; say so loudly.
        logger.error(
            "sale gate: could not invalidate sale %s; refusals may be stale for %ss",
            sale_id,
            settings.SALE_GATE_SECONDS,
            exc_info=True,
        )
    # After the bump: a process told to drop its copy must not read the old entry again.
    _near.drop([str(sale_id)])
