"""Reads of sales that other apps build on (the live page, the real-time layer)."""

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Max
from django.utils import timezone

from sales.models import FlashSale, Purchase


def featured_sale(moment: datetime | None = None) -> FlashSale | None:
    """The sale the home page shows: the live one ending first, else the next to start, else the
    one that started last (so a sold-out or ended sale still shows its result)."""
    moment = moment or timezone.now()
    return (
        FlashSale.objects.active(moment).order_by("end_time", "id").first()
        or FlashSale.objects.pending(moment).order_by("start_time", "id").first()
        or FlashSale.objects.order_by("-start_time", "-id").first()
    )


def find_sale(sale_id: int) -> FlashSale | None:
    """The sale with this id, or None when there is none (a push for a sale deleted since)."""
    return FlashSale.objects.filter(pk=sale_id).first()


def sales_whose_window_passed(*, since: datetime, until: datetime) -> list[FlashSale]:
    """Sales that started or ended in (since, until]: what the sale clock announces."""
    return list(
        FlashSale.objects.filter(start_time__gt=since, start_time__lte=until)
        | FlashSale.objects.filter(end_time__gt=since, end_time__lte=until)
    )


def sales_by_id(sale_ids: Iterable[int]) -> dict[int, FlashSale]:
    """The sales with these ids that exist, by id."""
    return {sale.pk: sale for sale in FlashSale.objects.filter(pk__in=list(sale_ids))}


def last_purchase_id_before(*, sale_id: int, moment: datetime) -> int:
    """The id of the sale's last purchase committed before `moment`; 0 when there is none."""
    older = Purchase.objects.filter(sale_id=sale_id, created_at__lt=moment)
    return older.aggregate(last=Max("id"))["last"] or 0


def newest_purchases_after(*, sale_id: int, after_id: int, limit: int) -> list[Purchase]:
    """The sale's newest `limit` purchases with an id above `after_id`, newest first, with their buyer."""
    return list(
        Purchase.objects.filter(sale_id=sale_id, id__gt=after_id).select_related("user").order_by("-id")[:limit]
    )
