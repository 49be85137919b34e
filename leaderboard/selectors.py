from django.conf import settings
from django.core.cache import cache
from django.db.models import Q, QuerySet

from sales.models import Purchase, PurchaseStatus


def chronological_purchases(*, sale_id: int | None = None) -> QuerySet[Purchase]:
    """Confirmed purchases (a hold appears once it is confirmed), oldest first, ties broken by id."""
    purchases = (
        Purchase.objects.filter(status=PurchaseStatus.CONFIRMED)
        .select_related("user")
        .only("id", "sale_id", "quantity", "created_at", "user__name")
    )
    if sale_id is not None:
        purchases = purchases.filter(sale_id=sale_id)
    return purchases.order_by("created_at", "id")


def purchases_after(*, anchor: Purchase, sale_id: int | None = None) -> QuerySet[Purchase]:
    """The purchases that come after `anchor` in chronological order (keyset: no OFFSET).

    Served by the (created_at, id) indexes however deep the anchor is.
    """
    later = Q(created_at__gt=anchor.created_at) | Q(created_at=anchor.created_at, pk__gt=anchor.pk)
    return chronological_purchases(sale_id=sale_id).filter(later)


def purchase_anchor(purchase_id: int) -> Purchase | None:
    """The purchase a keyset page starts after, or None when there is no such purchase."""
    return Purchase.objects.only("id", "created_at").filter(pk=purchase_id).first()


def purchase_count(*, sale_id: int | None = None) -> int:
    """How many purchases there are (of one sale), from the cache for a few seconds.

    Counting every purchase on each anonymous read was the expensive part of the leaderboard
    (issue 12: 2M purchases, 30 clients at 10 req/s made a buyer wait 12 s); a count up to
    LEADERBOARD_COUNT_CACHE_SECONDS old is good enough for a public list.
    """
    key = f"leaderboard:count:{sale_id or 'all'}"
    count = cache.get(key)
    if count is None:
        purchases = Purchase.objects.filter(status=PurchaseStatus.CONFIRMED)
        if sale_id is not None:
            purchases = purchases.filter(sale_id=sale_id)
        count = purchases.count()
        cache.set(key, count, settings.LEADERBOARD_COUNT_CACHE_SECONDS)
    return count
