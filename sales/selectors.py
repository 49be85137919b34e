"""Reads of sales that other apps build on (the live page, the real-time layer)."""

from datetime import datetime

from django.db.models import QuerySet, Sum
from django.utils import timezone

from accounts.models import User
from sales.models import FlashSale, Purchase, PurchaseStatus


def featured_sale(moment: datetime | None = None) -> FlashSale | None:
    """The sale the home page shows: the live one ending first, else the next to start, else the
    one that started last (so a sold-out or ended sale still shows its result)."""
    moment = moment or timezone.now()
    return (
        FlashSale.objects.active(moment).order_by("end_time", "id").first()
        or FlashSale.objects.pending(moment).order_by("start_time", "id").first()
        or FlashSale.objects.order_by("-start_time", "-id").first()
    )


def purchases_of(user: User) -> QuerySet[Purchase]:
    """`user`'s purchases, whatever their status, newest first (served by the (user, created_at, id) index)."""
    return Purchase.objects.filter(user=user).order_by("-created_at", "-id")


def held_units(sale_id: int) -> int:
    """Units of the sale held right now: out of the stock, not yet confirmed (served by the held-expiry index)."""
    held = Purchase.objects.filter(sale_id=sale_id, status=PurchaseStatus.HELD).aggregate(units=Sum("quantity"))
    return held["units"] or 0
