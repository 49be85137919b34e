"""The leaderboard's own reads: what it adds to sales' purchase reads (sales.selectors)."""

from django.conf import settings
from django.core.cache import cache

from sales import selectors as sale_selectors


def purchase_count(*, sale_id: int | None = None) -> int:
    """How many purchases there are (of one sale), from the cache for a few seconds.

    Counting every purchase on each anonymous read was the expensive part of the leaderboard
    (docs/performance.md "Measured reasons behind the code"); a count up to LEADERBOARD_COUNT_CACHE_SECONDS old is good
    enough for a public list.
    """
    key = f"leaderboard:count:{sale_id or 'all'}"
    count = cache.get(key)
    if count is None:
        count = sale_selectors.count_purchases(sale_id=sale_id)
        cache.set(key, count, settings.LEADERBOARD_COUNT_CACHE_SECONDS)
    return count
