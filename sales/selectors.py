"""Reads of sales that other apps build on (the live page, the real-time layer)."""

from datetime import datetime

from django.utils import timezone

from sales.models import FlashSale


def featured_sale(moment: datetime | None = None) -> FlashSale | None:
    """The sale the home page shows: the live one ending first, else the next to start, else the
    one that started last (so a sold-out or ended sale still shows its result)."""
    moment = moment or timezone.now()
    return (
        FlashSale.objects.active(moment).order_by("end_time", "id").first()
        or FlashSale.objects.pending(moment).order_by("start_time", "id").first()
        or FlashSale.objects.order_by("-start_time", "-id").first()
    )


def coming_sales(moment: datetime | None = None, *, limit: int = 10) -> list[FlashSale]:
    """What a buyer can still shop, for the pages' "other sales" list: the live sales with stock
    left, ending first, then the upcoming ones, starting first."""
    moment = moment or timezone.now()
    live = list(FlashSale.objects.active(moment).order_by("end_time", "id")[:limit])
    upcoming = list(FlashSale.objects.pending(moment).order_by("start_time", "id")[: limit - len(live)])
    return live + upcoming
