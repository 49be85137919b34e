"""Reads of sales and purchases: every query of FlashSale and Purchase outside the writes in
sales/services.py, for this app and the apps above it (live, leaderboard)."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Max, Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import User
from sales.exceptions import NoActiveSale, SaleNotFound
from sales.models import (
    QUEUE_OPENS_BEFORE,
    FlashSale,
    Purchase,
    PurchaseStatus,
    QueuePlace,
    WaitlistEntry,
    WaitlistState,
)


def get_sale(sale_id: int) -> FlashSale:
    """The sale with this id, or SaleNotFound."""
    try:
        return FlashSale.objects.get(pk=sale_id)
    except FlashSale.DoesNotExist:
        raise SaleNotFound(details={"saleId": sale_id}) from None


def active_sale(moment: datetime | None = None) -> FlashSale:
    """The sale buyers can buy from now; when several are, the one ending first (or NoActiveSale)."""
    sale = FlashSale.objects.active(moment or timezone.now()).order_by("end_time", "id").first()
    if sale is None:
        raise NoActiveSale()
    return sale


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
    """The sale's newest `limit` confirmed purchases with an id above `after_id`, newest first, with
    their buyer (a hold is announced once it is confirmed)."""
    confirmed = Purchase.objects.filter(sale_id=sale_id, id__gt=after_id, status=PurchaseStatus.CONFIRMED)
    return list(confirmed.select_related("user").order_by("-id")[:limit])


def recent_purchases(*, sale: FlashSale, limit: int, confirmed_only: bool = False) -> list[Purchase]:
    """The sale's `limit` latest purchases, newest first, with their buyer: all of them for staff,
    the confirmed ones for the live page (a hold is shown once it is confirmed)."""
    purchases = Purchase.objects.filter(sale=sale)
    if confirmed_only:
        purchases = purchases.filter(status=PurchaseStatus.CONFIRMED)
    return list(purchases.select_related("user").order_by("-created_at", "-id")[:limit])


# --- purchases in the order they were made (the leaderboard) -----------------------------------


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


def count_purchases(*, sale_id: int | None = None) -> int:
    """How many confirmed purchases there are (of one sale), counted now."""
    purchases = Purchase.objects.filter(status=PurchaseStatus.CONFIRMED)
    if sale_id is not None:
        purchases = purchases.filter(sale_id=sale_id)
    return purchases.count()


def coming_sales(moment: datetime | None = None, *, limit: int = 10) -> list[FlashSale]:
    """What a buyer can still shop, for the pages' "other sales" list: the live sales with stock
    left, ending first, then the upcoming ones, starting first."""
    moment = moment or timezone.now()
    live = list(FlashSale.objects.active(moment).order_by("end_time", "id")[:limit])
    upcoming = list(FlashSale.objects.pending(moment).order_by("start_time", "id")[: limit - len(live)])
    return live + upcoming


def purchases_of(user: User) -> QuerySet[Purchase]:
    """`user`'s purchases, whatever their status, newest first (served by the (user, created_at, id) index)."""
    return Purchase.objects.filter(user=user).order_by("-created_at", "-id")


def held_units(sale_id: int) -> int:
    """Units of the sale held right now: out of the stock, not yet confirmed (served by the held-expiry index)."""
    held = Purchase.objects.filter(sale_id=sale_id, status=PurchaseStatus.HELD).aggregate(units=Sum("quantity"))
    return held["units"] or 0


# --- holds for the real-time database feed (live/db_feed.py) ----------------------------------


def hold_activity(created_after: dict[int, datetime]) -> dict[int, tuple[int, datetime | None]]:
    """For each sale in `created_after`: the units held now and the newest confirm time among its
    purchases created after the moment given for it, in one aggregate.

    A hold is confirmed before it expires, so a confirm after a moment belongs to a purchase created
    less than the sale's hold_seconds before it: the caller passes that bound and the read stays on the
    (sale, created_at) and held indexes however many purchases the sale has. A sale with no held and
    no recent confirmed purchase is (0, None).
    """
    recent = Q(pk__in=[])
    for sale_id, moment in created_after.items():
        recent |= Q(sale_id=sale_id, created_at__gt=moment)
    held = Q(sale_id__in=list(created_after), status=PurchaseStatus.HELD)
    rows = (
        Purchase.objects.filter(held | (recent & Q(confirmed_at__isnull=False)))
        .values("sale_id")
        .annotate(
            units=Sum("quantity", filter=Q(status=PurchaseStatus.HELD)),
            confirmed=Max("confirmed_at", filter=Q(status=PurchaseStatus.CONFIRMED)),
        )
    )
    activity: dict[int, tuple[int, datetime | None]] = {sale_id: (0, None) for sale_id in created_after}
    for row in rows:
        activity[row["sale_id"]] = (row["units"] or 0, row["confirmed"])
    return activity


def confirmed_after(
    *, sale_id: int, after: datetime, created_after: datetime, up_to_id: int, limit: int
) -> list[Purchase]:
    """The sale's newest `limit` purchases confirmed after `after` with an id up to `up_to_id` (the
    later ones are announced by id), newest confirm first, with their buyer."""
    confirmed = Purchase.objects.filter(
        sale_id=sale_id,
        created_at__gt=created_after,
        id__lte=up_to_id,
        status=PurchaseStatus.CONFIRMED,
        confirmed_at__gt=after,
    )
    return list(confirmed.select_related("user").order_by("-confirmed_at", "-id")[:limit])


def waitlist_offers_after(served_after: dict[int, datetime]) -> list[WaitlistEntry]:
    """The waitlist places offered a hold after the moment given for their sale, with the buyer and
    the hold, in the order they were served."""
    after = Q(pk__in=[])
    for sale_id, moment in served_after.items():
        after |= Q(sale_id=sale_id, served_at__gt=moment)
    offered = WaitlistEntry.objects.filter(after, state=WaitlistState.OFFERED, purchase__isnull=False)
    return list(offered.select_related("user", "purchase").order_by("served_at", "id"))


# --- the waiting room's line (sales.queue), as pushed and shown to staff ----------------------


def queue_length(sale_id: int) -> int:
    """Places taken in the sale's waiting room: the last position given (read backwards on the
    unique (sale, position) index) plus the places not numbered yet (on their partial index), so
    a long line costs two index probes rather than a count of every place. Before the start every
    place waits unnumbered in the pre-queue and is counted on that partial index."""
    places = QueuePlace.objects.filter(sale_id=sale_id)
    last = places.aggregate(last=Max("position"))["last"] or 0
    return last + places.filter(position__isnull=True).count()


def open_waiting_rooms(moment: datetime) -> list[FlashSale]:
    """Waiting-room sales whose line is open at `moment` and not closed: taking places (from
    queueOpensAt) or admitting them, before the end, with stock left."""
    opened = Q(queue_opens_at__lte=moment) | Q(queue_opens_at__isnull=True, start_time__lte=moment + QUEUE_OPENS_BEFORE)
    return list(FlashSale.objects.filter(opened, waiting_room=True, end_time__gt=moment, current_stock__gt=0))


def has_waiting_room(sale_id: int) -> bool:
    return FlashSale.objects.filter(pk=sale_id, waiting_room=True).exists()


def purchases_per_second(sale_id: int, *, over: timedelta, moment: datetime) -> float:
    """The sale's purchases per second over the last `over` (on the (sale, created_at) index)."""
    recent = Purchase.objects.filter(sale_id=sale_id, created_at__gt=moment - over, created_at__lte=moment).count()
    return recent / over.total_seconds()
