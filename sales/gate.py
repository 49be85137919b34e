"""The purchase fast path: refuse a sold-out or not-live sale from the cache, before the database.

After a flash sale sells out, nearly every request of the herd is a refusal. Answering each one
with a refused UPDATE and a read costs a database round trip and a connection per attempt; the gate
answers it from one cache read instead, with no database access at all.

The gate only ever says "no", and only what the database itself said moments ago: the first refused
purchase records the refusal (`remember`), later ones replay it (`check`). Saying "yes" stays the
conditional UPDATE's job, so a lost, stale or unreachable cache can only send a request to the
database, never sell a unit that does not exist.

Every write that can make a refused purchase succeed (a restock, an edit of the window or stock,
ending a sale) bumps the sale's generation after commit (`forget`). An entry is valid only for the
generation that was current *before* the refusing read, so a refusal read from the database just
before a restock commits can never be replayed after it. Entries also expire after
`SALE_GATE_SECONDS` as a safety net for writes that bypass sales.services.
"""

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache

from flashsale import metrics, prefetch
from sales.exceptions import SaleNotActive, SalesError, SoldOut

logger = logging.getLogger("flashsale.gate")


def _entry_key(sale_id: int) -> str:
    return f"sales:gate:{sale_id}"


def _generation_key(sale_id: int) -> str:
    return f"sales:gate-generation:{sale_id}"


def cache_keys(sale_id: int) -> list[str]:
    """What `refusal_in` needs from the cache, so a caller can fetch it with other keys in one read."""
    return [_entry_key(sale_id), _generation_key(sale_id)]


def check(*, sale_id: int, moment: datetime) -> int | None:
    """Raise the refusal recorded for this sale if it still holds at `moment`.

    Returns the sale's current generation, to hand to `remember` if the database refuses; None
    when the cache cannot be read (then nothing is remembered either).
    """
    # Read at the start of the request with its other keys (flashsale.prefetch), if it was planned:
    # still before the database's refusing read, which is all `remember` needs.
    found = prefetch.cached_many(cache_keys(sale_id))
    if found is None:
        try:
            found = cache.get_many(cache_keys(sale_id))
        except Exception:  # the cache is an optimisation: when it is down, the database answers
            logger.warning("sale gate: cache unreachable, asking the database", exc_info=True)
            return None
    refusal = refusal_in(found, sale_id=sale_id, moment=moment)
    if refusal is not None:
        raise refusal
    generation: int = found.get(_generation_key(sale_id), 0)  # forget() stores ints
    return generation


def refusal_in(found: dict[str, Any], *, sale_id: int, moment: datetime) -> SalesError | None:
    """The refusal that `found` (a get_many of `cache_keys`) records for this sale at `moment`, if any."""
    entry = found.get(_entry_key(sale_id))
    if entry is None or entry["generation"] != found.get(_generation_key(sale_id), 0):
        return None
    refusal = _refusal(sale_id, entry, moment)
    if refusal is not None:
        metrics.SALE_GATE_HITS.labels(code=refusal.code).inc()
    return refusal


def _refusal(sale_id: int, entry: dict[str, Any], moment: datetime) -> SalesError | None:
    # The window is evaluated against the clock on every hit, so a pending sale's entry stops
    # refusing the moment the sale starts, and an entry seen live answers sale_not_active after
    # the end, exactly as the database path would. Details match sales.services._refusal.
    start, end = entry["start_time"], entry["end_time"]
    if not start <= moment < end:
        return SaleNotActive(details={"saleId": sale_id, "startTime": start, "endTime": end})
    if entry["sold_out"]:
        return SoldOut(details={"saleId": sale_id, "currentStock": 0})
    return None


def remember(
    *, sale_id: int, generation: int | None, refusal: SalesError, start_time: datetime, end_time: datetime
) -> SalesError:
    """Record the database's refusal of a purchase so the next attempts skip the database.

    Only refusals that hold for every buyer and quantity are kept: sold out, and outside the
    window. Returns `refusal`, so the caller can `raise remember(...)`.
    """
    if generation is None or not isinstance(refusal, (SoldOut, SaleNotActive)):
        return refusal
    entry = {
        "generation": generation,
        "sold_out": isinstance(refusal, SoldOut),
        "start_time": start_time,
        "end_time": end_time,
    }
    try:
        cache.set(_entry_key(sale_id), entry, timeout=settings.SALE_GATE_SECONDS)
    except Exception:
        logger.warning("sale gate: cache unreachable, refusal not remembered", exc_info=True)
    return refusal


def forget(sale_id: int) -> None:
    """Invalidate whatever the gate knows about a sale. Call after the changing write commits."""
    key = _generation_key(sale_id)
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
