"""The waitlist: buyers take a place in a sale's line; units that come back (expired or released
holds, restocks) are offered to them in that order by the sale clock, as holds in their name.

Serving runs in the sale clock only (one per deployment), so two offers never race each other; each
offer is a purchase by the same rule (sales.purchase.purchase_for_waiter), which decides stock and
the per-buyer limit under the sale's row lock, committed together with the place it serves.
"""

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from live import events
from sales import purchase
from sales.exceptions import SaleNotActive, SaleNotFound, SalesError, UserLimitReached
from sales.models import FlashSale, WaitlistEntry, WaitlistState


@dataclass(frozen=True)
class Place:
    """A buyer's place: `position` counts the places still waiting up to theirs (None once served)."""

    entry: WaitlistEntry
    position: int | None
    created: bool


def join(*, user: User, sale_id: int) -> Place:
    """Take `user`'s place in the sale's waitlist, or the place they already hold. A sale that has
    ended takes no one (SaleNotActive)."""
    sale = FlashSale.objects.filter(pk=sale_id).only("start_time", "end_time").first()
    if sale is None:
        raise SaleNotFound(details={"saleId": sale_id})
    if sale.end_time <= timezone.now():
        raise SaleNotActive(details={"saleId": sale_id, "startTime": sale.start_time, "endTime": sale.end_time})
    try:
        with transaction.atomic():
            entry, created = WaitlistEntry.objects.get_or_create(sale_id=sale_id, user=user)
    except IntegrityError:
        # A twin request took the place between the read and the insert (the unique constraint).
        entry, created = WaitlistEntry.objects.get(sale_id=sale_id, user=user), False
    return Place(entry, _position(entry), created)


def serve() -> int:
    """Offer one unit to each waiting buyer, in waitlist order, while the sale has stock: a sale that is
    live, unpaused and has holds. Returns how many holds were offered."""
    offered = 0
    sale_ids = (
        FlashSale.objects.live(timezone.now())
        .filter(current_stock__gt=0, paused=False, hold_seconds__gt=0, waitlist__state=WaitlistState.WAITING)
        .values_list("pk", flat=True)
        .distinct()
    )
    for sale_id in list(sale_ids):
        offered += _serve_sale(sale_id)
    return offered


def _serve_sale(sale_id: int) -> int:
    offered = 0
    waiting = WaitlistEntry.objects.filter(sale_id=sale_id, state=WaitlistState.WAITING).select_related("user")
    for entry in waiting.order_by("id").iterator(chunk_size=50):
        try:
            with transaction.atomic():
                result = purchase.purchase_for_waiter(user=entry.user, sale_id=sale_id)
                WaitlistEntry.objects.filter(pk=entry.pk).update(
                    state=WaitlistState.OFFERED, served_at=result.timestamp, purchase_id=result.purchase_id
                )
                events.waitlist_offered(
                    sale_id=sale_id,
                    purchase_id=result.purchase_id,
                    user_name=entry.user.name,
                    expires_at=result.expires_at,
                )
        except UserLimitReached:
            # They hold all they may: the next in line gets the unit.
            WaitlistEntry.objects.filter(pk=entry.pk).update(state=WaitlistState.SKIPPED, served_at=timezone.now())
            continue
        except SalesError:
            break  # sold out again, ended or paused: the rest keep their places
        offered += 1
        if result.remaining_stock == 0:
            break
    return offered


def _position(entry: WaitlistEntry) -> int | None:
    if entry.state != WaitlistState.WAITING:
        return None
    return WaitlistEntry.objects.filter(sale_id=entry.sale_id, state=WaitlistState.WAITING, pk__lte=entry.pk).count()
