"""Reads for the drop dashboard (sales/dashboard_views.py): the timeline of sales, and per sale its
units sold per minute, peak rate, sell-out estimate, conversion and refusals by code.

Units per minute come from the purchases themselves, in one GROUP BY over the sale's index
(purchase_sale_chrono_idx) that SQLite and PostgreSQL both run; refusals leave no row, so they come
from the cache's tally (sales.refusals).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Sum
from django.db.models.functions import TruncMinute
from django.utils import timezone

from sales import refusals
from sales.models import TAKING_STATUSES, FlashSale, Purchase, SaleStatus

MINUTE = timedelta(minutes=1)
# The sell-out estimate follows the rate of the last few minutes, not the whole sale's: a drop's
# first minute sells far faster than its tail.
RECENT_MINUTES = 5
# Finished sales stay on the timeline this long after their end.
TIMELINE_PAST = timedelta(hours=24)
TIMELINE_MAX = 50


def _minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def units_per_minute(*, sale_id: int, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """Units of `sale_id` sold in each minute that begins in [`start`'s minute, `end`), minutes
    without a sale included as 0, in order. Minutes are those of the current time zone (UTC here).
    Sold: confirmed, or held now; a hold that expired or was released sold nothing."""
    sold = dict(
        Purchase.objects.filter(
            sale_id=sale_id, status__in=TAKING_STATUSES, created_at__gte=_minute_floor(start), created_at__lt=end
        )
        .annotate(minute=TruncMinute("created_at"))
        .values("minute")
        .annotate(units=Sum("quantity"))
        .order_by("minute")
        .values_list("minute", "units")
    )
    minutes = []
    minute = _minute_floor(start)
    while minute < end:
        minutes.append((minute, sold.get(minute, 0)))
        minute += MINUTE
    return minutes


@dataclass(frozen=True)
class SaleFigures:
    """One sale's figures at `moment`."""

    sale: FlashSale
    status: str
    moment: datetime
    per_minute: list[tuple[datetime, int]]
    buyers: int
    buyers_refused_only: int
    refusals_by_code: dict[str, int]
    sold_out_at: datetime | None

    @property
    def peak_per_minute(self) -> int:
        return max((units for _, units in self.per_minute), default=0)

    @property
    def recent_per_minute(self) -> float:
        """Units a minute over the last RECENT_MINUTES of the window so far (fewer at its start)."""
        if not self.per_minute:
            return 0.0
        recent = self.per_minute[-RECENT_MINUTES:]
        since = max(recent[0][0], self.sale.start_time)
        until = min(self.moment, self.sale.end_time)
        minutes = max((until - since) / MINUTE, 1.0)
        return sum(units for _, units in recent) / minutes

    @property
    def sell_out_estimate(self) -> datetime | None:
        """When the stock runs out at the recent rate, if that is before the sale ends."""
        rate = self.recent_per_minute
        if self.status != SaleStatus.ACTIVE or rate <= 0:
            return None
        estimate = self.moment + MINUTE * (self.sale.current_stock / rate)
        return estimate if estimate < self.sale.end_time else None

    @property
    def buyers_tried(self) -> int:
        return self.buyers + self.buyers_refused_only

    @property
    def conversion(self) -> float | None:
        """Buyers who bought / buyers who tried (bought, or were refused)."""
        return self.buyers / self.buyers_tried if self.buyers_tried else None

    @property
    def time_to_sell_out(self) -> timedelta | None:
        return self.sold_out_at - self.sale.start_time if self.sold_out_at else None


def sale_figures(sale: FlashSale, moment: datetime | None = None) -> SaleFigures:
    """The dashboard's figures of `sale`: the chart covers its window up to `moment` (the whole
    window once it has ended)."""
    moment = moment or timezone.now()
    status = sale.status_at(moment)
    started = sale.start_time <= moment
    per_minute = (
        units_per_minute(sale_id=sale.pk, start=sale.start_time, end=min(moment, sale.end_time)) if started else []
    )
    buyer_ids = list(
        Purchase.objects.filter(sale_id=sale.pk, status__in=TAKING_STATUSES)
        .order_by()
        .values_list("user_id", flat=True)
        .distinct()
    )
    tally = refusals.read(sale_id=sale.pk, buyer_ids=buyer_ids)
    sold_out_at = None
    if sale.current_stock == 0:
        # The purchase that took the last unit (after a restock, the last one that emptied it).
        last = Purchase.objects.filter(sale_id=sale.pk, status__in=TAKING_STATUSES).order_by("-created_at")
        sold_out_at = last.values_list("created_at", flat=True).first()
    return SaleFigures(
        sale=sale,
        status=status,
        moment=moment,
        per_minute=per_minute,
        buyers=len(buyer_ids),
        buyers_refused_only=tally.refused_only,
        refusals_by_code=tally.by_code,
        sold_out_at=sold_out_at,
    )


def timeline(moment: datetime) -> list[FlashSale]:
    """Live and upcoming sales, and those that ended in the last TIMELINE_PAST, by start time."""
    recent = FlashSale.objects.filter(end_time__gt=moment - TIMELINE_PAST)
    return list(recent.order_by("start_time", "id")[:TIMELINE_MAX])


def live_sales(moment: datetime) -> list[FlashSale]:
    """Sales whose window contains `moment`, sold out or not, ending first first."""
    return list(FlashSale.objects.live(moment).order_by("end_time", "id"))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def figures_json(figures: SaleFigures) -> dict[str, Any]:
    """The figures as the dashboard's JSON names them (camelCase, like the API)."""
    sale = figures.sale
    return {
        "id": sale.pk,
        "name": sale.name,
        "status": figures.status,
        "startTime": _iso(sale.start_time),
        "endTime": _iso(sale.end_time),
        "originalStock": sale.original_stock,
        "currentStock": sale.current_stock,
        "unitsSold": sale.units_sold,
        # Unix seconds, as the chart's x axis takes them.
        "perMinute": {
            "minuteStarts": [int(minute.timestamp()) for minute, _ in figures.per_minute],
            "units": [units for _, units in figures.per_minute],
        },
        "peakPerMinute": figures.peak_per_minute,
        "recentPerMinute": round(figures.recent_per_minute, 2),
        "sellOutEstimate": _iso(figures.sell_out_estimate),
        "soldOutAt": _iso(figures.sold_out_at),
        "timeToSellOutSeconds": figures.time_to_sell_out.total_seconds() if figures.time_to_sell_out else None,
        "buyers": figures.buyers,
        "buyersTried": figures.buyers_tried,
        "conversion": figures.conversion,
        "refusals": dict(sorted(figures.refusals_by_code.items())),
    }


def timeline_json(sale: FlashSale, moment: datetime) -> dict[str, Any]:
    return {
        "id": sale.pk,
        "name": sale.name,
        "status": sale.status_at(moment),
        "startTime": _iso(sale.start_time),
        "endTime": _iso(sale.end_time),
        "originalStock": sale.original_stock,
        "currentStock": sale.current_stock,
    }
