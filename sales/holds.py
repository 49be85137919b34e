"""Holds: a purchase of a sale with `hold_seconds` > 0 is `held` until its buyer (or staff, for a shop's
payment back end) confirms or releases it, or the sale clock returns it when it expires.

Each way out of `held` is one conditional UPDATE that only a held row matches, so the purchase's row
lock decides which comes first and the others match nothing: a hold is confirmed, released or expired
exactly once, and its units come back at most once. Confirm touches the purchase only (never the sale's
hot row); release and expiry return the units to the sale in the same statement that ends the hold.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.db import connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from accounts.models import User
from live import events
from sales import gate, waitlist
from sales.exceptions import HoldConfirmed, HoldExpired, HoldReleased, PurchaseNotFound
from sales.models import FlashSale, Purchase, PurchaseStatus


@dataclass(frozen=True)
class Returned:
    """Units that came back to a sale, and the stock they left as of `stock_version`."""

    sale_id: int
    units: int
    current_stock: int
    stock_version: int


# --- confirm and release -------------------------------------------------------------------


def confirm(*, user: User, purchase_id: int) -> Purchase:
    """Make `user`'s held purchase final (any purchase for staff); a confirmed one is answered as it is.

    Only while the hold has not expired on the database's clock: after `expires_at` it is HoldExpired
    and nothing changes, whether or not the sale clock has returned the units yet. A released hold is
    HoldReleased; a purchase that is not the caller's is PurchaseNotFound, as if it did not exist.
    """
    with transaction.atomic():
        # The held row's lock first (the purchase's only: never the sale's hot row), then the clock:
        # the deadline is judged at a moment after any wait for the lock, and the same moment is the
        # confirm's time, so a confirmed purchase's confirmed_at is always before its expires_at.
        # The sale clock's expiry skips a row locked here (SKIP LOCKED) until this commits.
        held = _visible_to(user).select_for_update().filter(pk=purchase_id, status=PurchaseStatus.HELD)
        confirmed = 0
        if list(held.values_list("pk", flat=True)):
            now = _database_now()
            confirmed = held.filter(expires_at__gt=now).update(status=PurchaseStatus.CONFIRMED, confirmed_at=now)
    order = _purchase(user=user, purchase_id=purchase_id)
    if confirmed:
        # On the leaderboard from now on.
        events.purchase_confirmed(
            sale_id=order.sale_id,
            user_name=order.user.name,
            quantity=order.quantity,
            timestamp=order.created_at,
        )
        return order
    if order.status == PurchaseStatus.CONFIRMED:
        return order
    if order.status == PurchaseStatus.RELEASED:
        raise HoldReleased(details=_details(order))
    # Expired, or still held past its expiry until the clock's next tick returns it.
    raise HoldExpired(details=_details(order))


def release(*, user: User, purchase_id: int) -> Purchase:
    """Give the units of `user`'s held purchase (any purchase for staff) back to the sale at once; a
    released one is answered as it is. A confirmed purchase is final (HoldConfirmed); an expired hold's
    units are already back (HoldExpired)."""
    with transaction.atomic():
        returned = _release(user=user, purchase_id=purchase_id)
        order = _purchase(user=user, purchase_id=purchase_id)
        if returned is not None:
            _announce(returned)
            return order
    if order.status == PurchaseStatus.RELEASED:
        return order
    if order.status == PurchaseStatus.CONFIRMED:
        raise HoldConfirmed(details=_details(order))
    raise HoldExpired(details=_details(order))


# --- expiry (the sale clock) ---------------------------------------------------------------


def expire_holds() -> list[Returned]:
    """Return the units of every hold whose `expires_at` has passed on the database's clock, in one
    statement; offer units to waiting buyers (sales.waitlist.serve); then push the sales' new stock
    and reopen their gates. Holds that a
    confirm or release has locked are left for the next call (they are decided by then)."""
    with transaction.atomic():
        returned = _expire_on_postgresql() if connection.vendor == "postgresql" else _expire_in_python()
    # Waiting buyers are offered the units first: the gate still refuses the herd a sale it
    # remembers sold out until the sale's announcement below forgets it.
    waitlist.serve()
    for sale in returned:
        _announce(sale)
    return returned


# On PostgreSQL, ending the holds and returning their units is one statement: each purchase row is
# locked and re-checked (`status = 'held'`) before it is counted, so a hold that a confirm or release
# ended while this waited is not returned; SKIP LOCKED leaves one they hold to the next tick instead
# of waiting behind it. The sales' rows are locked after the purchases', the same order as release.
EXPIRE_STATEMENT = """
WITH due AS (
    SELECT p.id FROM sales_purchase AS p
     WHERE p.status = 'held' AND p.expires_at <= clock_timestamp()
     ORDER BY p.id
       FOR UPDATE SKIP LOCKED
), expired AS (
    UPDATE sales_purchase AS p SET status = 'expired', released_at = clock_timestamp()
      FROM due WHERE p.id = due.id AND p.status = 'held'
    RETURNING p.sale_id, p.quantity
), units AS (
    SELECT sale_id, SUM(quantity) AS units FROM expired GROUP BY sale_id
)
UPDATE sales_flashsale AS s
   SET current_stock = s.current_stock + units.units, stock_version = s.stock_version + 1
  FROM units WHERE s.id = units.sale_id
RETURNING s.id, units.units, s.current_stock, s.stock_version
"""

# Release on PostgreSQL: the purchase's row lock decides against confirm and expiry (both need
# `status = 'held'`), and the units go back in the same statement, so they come back at most once.
RELEASE_STATEMENT = """
WITH released AS (
    UPDATE sales_purchase AS p SET status = 'released', released_at = clock_timestamp()
     WHERE p.id = %(purchase)s AND p.status = 'held' AND (p.user_id = %(user)s OR %(staff)s)
    RETURNING p.sale_id, p.quantity
)
UPDATE sales_flashsale AS s
   SET current_stock = s.current_stock + released.quantity, stock_version = s.stock_version + 1
  FROM released WHERE s.id = released.sale_id
RETURNING s.id, released.quantity, s.current_stock, s.stock_version
"""


def _release(*, user: User, purchase_id: int) -> Returned | None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(RELEASE_STATEMENT, {"purchase": purchase_id, "user": user.pk, "staff": user.is_staff})
            row = cursor.fetchone()
        return Returned(*row) if row else None
    # SQLite serialises writers (transactions begin IMMEDIATE): nothing moves between these lines.
    held = _visible_to(user).filter(pk=purchase_id, status=PurchaseStatus.HELD).values("sale_id", "quantity").first()
    if held is None:
        return None
    Purchase.objects.filter(pk=purchase_id).update(status=PurchaseStatus.RELEASED, released_at=timezone.now())
    return _give_back(held["sale_id"], held["quantity"])


def _expire_on_postgresql() -> list[Returned]:
    with connection.cursor() as cursor:
        cursor.execute(EXPIRE_STATEMENT)
        return [Returned(*row) for row in cursor.fetchall()]


def _expire_in_python() -> list[Returned]:
    now = timezone.now()
    due = Purchase.objects.filter(status=PurchaseStatus.HELD, expires_at__lte=now)
    units = list(due.values("sale_id").annotate(units=Sum("quantity")).order_by("sale_id"))
    due.update(status=PurchaseStatus.EXPIRED, released_at=now)
    return [_give_back(row["sale_id"], row["units"]) for row in units]


def _give_back(sale_id: int, units: int) -> Returned:
    FlashSale.objects.filter(pk=sale_id).update(
        current_stock=F("current_stock") + units, stock_version=F("stock_version") + 1
    )
    stock, stock_version = FlashSale.objects.filter(pk=sale_id).values_list("current_stock", "stock_version").get()
    return Returned(sale_id, units, stock, stock_version)


def _announce(returned: Returned) -> None:
    # First, so a sold-out sale sells again before anyone is told its stock came back.
    transaction.on_commit(partial(gate.forget, returned.sale_id))
    events.stock_changed(
        sale_id=returned.sale_id, current_stock=returned.current_stock, stock_version=returned.stock_version
    )
    events.holds_returned(sale_id=returned.sale_id)


def _visible_to(user: User):
    purchases = Purchase.objects.all()
    return purchases if user.is_staff else purchases.filter(user=user)


def _purchase(*, user: User, purchase_id: int) -> Purchase:
    order = _visible_to(user).select_related("user").filter(pk=purchase_id).first()
    if order is None:
        raise PurchaseNotFound(details={"purchaseId": purchase_id})
    return order


def _details(order: Purchase) -> dict:
    return {"purchaseId": order.pk, "status": order.status, "expiresAt": order.expires_at}


def _database_now() -> datetime:
    """The database's clock now (PostgreSQL's clock_timestamp(), not the transaction's start); on
    SQLite, whose transactions begin IMMEDIATE, the time read inside one is already after the lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT clock_timestamp()")
            return cursor.fetchone()[0]
    return timezone.now()
