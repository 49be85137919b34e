"""The rules that write flash sales and purchases. Views and the admin call these, nothing else
writes a sale."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import DateTimeField, F, Func, IntegerField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts import services as accounts_services
from accounts.models import User
from live import events
from sales import gate
from sales.exceptions import (
    InsufficientStock,
    InvalidSaleChange,
    SaleNotActive,
    SaleNotFound,
    SalesError,
    SoldOut,
    UserLimitReached,
    VersionConflict,
)
from sales.models import FlashSale, Purchase
from sales.selectors import get_sale

EDITABLE_FIELDS = ("name", "start_time", "end_time", "original_stock")
# The most units a sale may ever hold (create, edit and restock): far below the 32-bit
# original_stock/current_stock columns, so no total can overflow them.
MAX_STOCK = 10_000_000


# --- reads --------------------------------------------------------------------------------


# --- the purchase rule --------------------------------------------------------------------


@dataclass(frozen=True)
class PurchaseResult:
    """A committed purchase and the stock it left."""

    purchase_id: int
    sale_id: int
    quantity: int
    remaining_stock: int
    timestamp: datetime


def purchase(*, user: User, sale_id: int, quantity: int) -> PurchaseResult:
    """Take `quantity` units of a live sale for `user`, or raise a SalesError subclass.

    One statement decides: the conditional decrement takes the units and the sale's row lock, and
    "live" is judged on the database's clock while that lock is held, never on a time read before
    waiting for it. The per-user cap is read under the same lock and the purchase inserted before
    it is released, so everything commits or rolls back together.
    """
    cap = settings.MAX_UNITS_PER_USER
    if quantity > cap:
        raise UserLimitReached(details={"maxUnitsPerUser": cap, "held": None, "requested": quantity})
    # A sale known to be sold out or outside its window is refused from the cache, with no DB access.
    generation = gate.check(sale_id=sale_id, moment=timezone.now())
    take = _take_on_postgresql if connection.vendor == "postgresql" else _take_in_python
    try:
        result, current_version = take(user=user, sale_id=sale_id, quantity=quantity, cap=cap, generation=generation)
    except IntegrityError:
        # The purchase's foreign key to the user failed when the user was deleted while their
        # token was still cached; any other integrity error is a real fault.
        accounts_services.raise_if_deleted(user)
        raise
    # A failing push (Redis down) is logged, never turned into an error answer that invites a
    # second purchase: the purchase is committed by then.
    events.purchase_made(
        sale_id=result.sale_id,
        remaining_stock=result.remaining_stock,
        quantity=result.quantity,
        timestamp=result.timestamp,
        user_name=user.name,
        version=current_version,
    )
    return result


# The whole rule in one round trip: see sales/migrations/0002_purchase_function.py for the
# function and why each of its steps is safe under READ COMMITTED.
PURCHASE_STATEMENT = (
    "SELECT outcome, purchase_id, created_at, current_stock, version, start_time, end_time, held, db_now"
    " FROM flashsale_purchase(%s, %s, %s, %s)"
)


def _take_on_postgresql(
    *, user: User, sale_id: int, quantity: int, cap: int, generation: int | None
) -> tuple[PurchaseResult, int]:
    # In autocommit (no surrounding atomic block) the statement is its own transaction: the row
    # lock is taken and released inside PostgreSQL. The idempotency layer wraps it in its own
    # transaction so the key's record commits with the purchase.
    with connection.cursor() as cursor:
        cursor.execute(PURCHASE_STATEMENT, [user.pk, sale_id, quantity, cap])
        outcome, purchase_id, created_at, stock, version, start_time, end_time, held, db_now = cursor.fetchone()
    if outcome == "bought":
        result = PurchaseResult(
            purchase_id=purchase_id, sale_id=sale_id, quantity=quantity, remaining_stock=stock, timestamp=created_at
        )
        return result, version
    if outcome == "over_cap":
        raise UserLimitReached(details={"maxUnitsPerUser": cap, "held": held, "requested": quantity})
    if outcome == "not_found":
        raise SaleNotFound(details={"saleId": sale_id})
    raise _refusal(
        sale_id=sale_id,
        quantity=quantity,
        moment=db_now,
        generation=generation,
        start_time=start_time,
        end_time=end_time,
        current_stock=stock,
    )


def _take_in_python(
    *, user: User, sale_id: int, quantity: int, cap: int, generation: int | None
) -> tuple[PurchaseResult, int]:
    """The same rule for SQLite, which serialises writers: the transaction begins IMMEDIATE
    (settings), so the write lock is held from its first line and the clock is read after it."""
    with transaction.atomic():
        moment = timezone.now()
        taken = (
            FlashSale.objects.live(moment)
            .filter(pk=sale_id, current_stock__gte=quantity)
            .update(current_stock=F("current_stock") - quantity, version=F("version") + 1)
        )
        if not taken:
            sale = FlashSale.objects.filter(pk=sale_id).values("start_time", "end_time", "current_stock").first()
            if sale is None:
                raise SaleNotFound(details={"saleId": sale_id})
            raise _refusal(sale_id=sale_id, quantity=quantity, moment=moment, generation=generation, **sale)
        stock, version, held = _stock_and_holding(sale_id, user)
        if held + quantity > cap:
            # Raising rolls the decrement back.
            raise UserLimitReached(details={"maxUnitsPerUser": cap, "held": held, "requested": quantity})
        order = Purchase.objects.create(user=user, sale_id=sale_id, quantity=quantity, created_at=moment)
    result = PurchaseResult(
        purchase_id=order.pk, sale_id=sale_id, quantity=quantity, remaining_stock=stock, timestamp=moment
    )
    return result, version


def _stock_and_holding(sale_id: int, user: User) -> tuple[int, int, int]:
    """The sale's stock and version as this transaction left them, and the units `user` holds."""
    held = (
        Purchase.objects.filter(sale_id=OuterRef("pk"), user=user)
        .values("sale_id")
        .annotate(units=Sum("quantity"))
        .values("units")
    )
    return (
        FlashSale.objects.filter(pk=sale_id)
        .annotate(held=Coalesce(Subquery(held, output_field=IntegerField()), Value(0)))
        .values_list("current_stock", "version", "held")
        .get()
    )


def _refusal(
    *,
    sale_id: int,
    quantity: int,
    moment: datetime,
    generation: int | None,
    start_time: datetime,
    end_time: datetime,
    current_stock: int,
) -> SalesError:
    """Name a refused decrement from the sale as read after it; the read decides nothing about stock.

    Refusals that hold for everyone (sold out, outside the window) are handed to the gate so the
    rest of the herd is answered from the cache. The refused UPDATE matched no row, so no row lock
    is held while the cache is written.
    """
    remember = partial(gate.remember, sale_id=sale_id, generation=generation, start_time=start_time, end_time=end_time)
    if not start_time <= moment < end_time:
        return remember(
            refusal=SaleNotActive(details={"saleId": sale_id, "startTime": start_time, "endTime": end_time})
        )
    if current_stock == 0:
        return remember(refusal=SoldOut(details={"saleId": sale_id, "currentStock": 0}))
    return InsufficientStock(details={"saleId": sale_id, "currentStock": current_stock, "requested": quantity})


# --- staff writes -------------------------------------------------------------------------


def create_sale(*, name: str, start_time: datetime, end_time: datetime, original_stock: int = 200) -> FlashSale:
    check_window(start_time, end_time)
    _check_stock(original_stock)
    sale = FlashSale.objects.create(
        name=name,
        start_time=start_time,
        end_time=end_time,
        original_stock=original_stock,
        current_stock=original_stock,
    )
    events.sale_changed(sale_id=sale.pk)
    return sale


# Per-sale settings a clone carries over when the model has them.
CLONED_SETTINGS = ("max_per_buyer", "max_per_purchase")
CLONE_SUFFIX = " (copy)"
CLONE_STARTS_IN = timedelta(hours=1)


def clone_name(name: str) -> str:
    max_length = FlashSale._meta.get_field("name").max_length or len(name) + len(CLONE_SUFFIX)
    return name[: max_length - len(CLONE_SUFFIX)] + CLONE_SUFFIX


def clone_sale(*, sale_id: int) -> FlashSale:
    """A new pending sale like `sale_id`: its name with " (copy)", its stock (in full, none sold), its
    per-sale settings and its duration, starting in an hour at a whole minute, for staff to reschedule.

    It never starts by itself sooner: a copy of a live sale must not go live by accident."""
    source = get_sale(sale_id)
    start_time = (timezone.now() + CLONE_STARTS_IN).replace(second=0, microsecond=0) + timedelta(minutes=1)
    settings_of_source = {field: getattr(source, field) for field in CLONED_SETTINGS if hasattr(source, field)}
    sale = FlashSale.objects.create(
        name=clone_name(source.name),
        start_time=start_time,
        end_time=start_time + (source.end_time - source.start_time),
        original_stock=source.original_stock,
        current_stock=source.original_stock,
        **settings_of_source,
    )
    events.sale_changed(sale_id=sale.pk)
    return sale


def check_sale_update(
    *, sale: FlashSale, expected_version: int, changes: dict[str, Any], start_now: bool = False
) -> dict[str, Any]:
    """The column updates `update_sale` would write for `changes` to `sale` (as read), or the
    VersionConflict/InvalidSaleChange it would raise. Writes nothing; an empty dict when every
    change equals what is stored (and `start_now` is not asked for), whatever the version.

    The admin calls it while validating a form, so a refused edit is shown next to its fields;
    `update_sale` runs it again and still writes only if the version matches.

    A pending sale's start may move into the past only with `start_now`, which starts it at the
    database's clock: one mistyped date must not launch a sale. A started sale's start stays put,
    except that one with no purchase yet may be moved back to the future (pending again).
    """
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    changes = {field: value for field, value in changes.items() if value != getattr(sale, field)}
    if not changes and not start_now:
        # Nothing to write, so nothing can be overwritten: a stale version does not matter.
        return {}
    if sale.version != expected_version:
        raise _conflict(sale)
    now = timezone.now()
    if start_now:
        if "start_time" in changes:
            raise InvalidSaleChange(
                "Give a start time or ask to start now, not both.",
                details={"startNow": ["Cannot be combined with startTime."]},
            )
        if sale.start_time <= now:
            raise InvalidSaleChange(
                "A sale that has started cannot be started again.",
                details={"startNow": ["The sale has already started."]},
            )
    start_time = now if start_now else changes.get("start_time", sale.start_time)
    end_time = changes.get("end_time", sale.end_time)
    check_window(start_time, end_time)
    reopens = False
    if sale.start_time <= now:
        if start_time != sale.start_time:
            if start_time <= now:
                raise InvalidSaleChange(
                    "A sale that has started cannot have its start moved.",
                    details={"startTime": ["The sale has already started."]},
                )
            if sale.units_sold:
                raise InvalidSaleChange(
                    "A sale with purchases cannot have its start moved.",
                    details={"startTime": [f"{sale.units_sold} units are already sold."]},
                )
            # Nobody bought yet: nothing recorded depends on the window, so it may wait again.
            reopens = True
        if not reopens and end_time < sale.end_time and sale.end_time > now:
            raise InvalidSaleChange(
                "A live sale cannot be shortened; end it explicitly instead.",
                details={"endTime": ["A live sale cannot be shortened."]},
            )
    elif "start_time" in changes and start_time <= now:
        raise InvalidSaleChange(
            "This start is in the past: saving it would start the sale at once. Ask to start it now instead.",
            details={"startTime": ["Must be in the future; send startNow: true to start the sale now."]},
        )
    updates: dict[str, Any] = {
        field: changes[field] for field in ("name", "start_time", "end_time") if field in changes
    }
    if start_now:
        updates["start_time"] = _database_clock()
    if "original_stock" in changes:
        new_original = changes["original_stock"]
        _check_stock(new_original)
        if new_original < sale.units_sold:
            raise InvalidSaleChange(
                "Stock cannot go below the units already sold.",
                details={"originalStock": [f"{sale.units_sold} units are already sold."]},
            )
        delta = new_original - sale.original_stock
        updates["original_stock"] = new_original
        updates["current_stock"] = F("current_stock") + delta
    return updates


def update_sale(*, sale_id: int, expected_version: int, changes: dict[str, Any], start_now: bool = False) -> FlashSale:
    """Apply `changes` (a subset of EDITABLE_FIELDS) only if the sale is still at `expected_version`.

    Any purchase bumps the version too, so an edit made from a copy read before it is refused
    (VersionConflict) instead of silently overwriting it. Stock never comes from the caller's copy:
    a new `original_stock` moves `current_stock` by the same delta in the database. Changes equal to
    what is stored write nothing and return the sale as it is (same version). `start_now` starts a
    pending sale at the database's clock (see `check_sale_update`).
    """
    sale = get_sale(sale_id)
    updates = check_sale_update(sale=sale, expected_version=expected_version, changes=changes, start_now=start_now)
    if not updates:
        return sale
    target = FlashSale.objects.filter(pk=sale_id, version=expected_version)
    if "start_time" in updates:
        # A start moves only while the sale has not started or nobody bought yet: decided in the
        # same UPDATE that takes the row lock, so a purchase that commits first makes it match
        # nothing, and one waiting behind it finds the sale not started.
        target = target.filter(Q(start_time__gt=_database_clock()) | Q(current_stock=F("original_stock")))
    with transaction.atomic():
        written = target.update(**updates, version=F("version") + 1)
        if not written:
            stored = get_sale(sale_id)
            # Names the purchase that got in first when there was one, else the version conflict.
            check_sale_update(sale=stored, expected_version=expected_version, changes=changes, start_now=start_now)
            raise _conflict(stored)
        sale.refresh_from_db()
        # First, so the gate reopens before anyone is told the sale changed.
        transaction.on_commit(partial(gate.forget, sale_id))
        events.sale_changed(sale_id=sale_id)
        events.stock_changed(sale_id=sale_id, current_stock=sale.current_stock, version=sale.version)
    return sale


def add_units(*, sale_id: int, units: int) -> FlashSale:
    """Restock: grow original and current stock together, safe during a live herd (no version check)."""
    if units < 1:
        raise InvalidSaleChange("Add at least one unit.", details={"units": ["Must be at least 1."]})
    if units > MAX_STOCK:
        raise _over_cap(units=units, original_stock=None)
    with transaction.atomic():
        # The cap is judged on the stock as the UPDATE finds it, so concurrent restocks cannot pass it together.
        written = FlashSale.objects.filter(pk=sale_id, original_stock__lte=MAX_STOCK - units).update(
            original_stock=F("original_stock") + units,
            current_stock=F("current_stock") + units,
            version=F("version") + 1,
        )
        if not written:
            stored = get_sale(sale_id)
            raise _over_cap(units=units, original_stock=stored.original_stock)
        sale = FlashSale.objects.get(pk=sale_id)
        # A restock must sell again at once: the gate forgets "sold out" as soon as this commits.
        transaction.on_commit(partial(gate.forget, sale_id))
        events.stock_changed(sale_id=sale_id, current_stock=sale.current_stock, version=sale.version)
    return sale


def end_sale_now(*, sale_id: int) -> FlashSale:
    """Close a live sale immediately. A pending sale cannot be ended; a finished one is left alone.

    The end is the database's clock once this UPDATE holds the sale's row lock: every purchase
    committed before it has an earlier timestamp, every purchase waiting behind it sees the sale
    ended, so the units sold in the answer are final.
    """
    with transaction.atomic():
        now = _database_clock()
        # start_time < now (not <=) keeps end_time > start_time for the check constraint.
        written = FlashSale.objects.filter(pk=sale_id, start_time__lt=now, end_time__gt=now).update(
            end_time=now, version=F("version") + 1
        )
        sale = get_sale(sale_id)
        if not written:
            raise SaleNotActive(
                "Only a live sale can be ended.",
                details={"saleId": sale_id, "startTime": sale.start_time, "endTime": sale.end_time},
            )
        transaction.on_commit(partial(gate.forget, sale_id))
        events.sale_changed(sale_id=sale_id)
    return sale


def delete_sale(*, sale: FlashSale) -> None:
    """Delete a sale that is not live; one with purchases is kept by the database (PROTECT)."""
    if sale.is_live_at(timezone.now()):
        raise InvalidSaleChange("A live sale cannot be deleted; end it first.", details={"saleId": sale.pk})
    sale_id = sale.pk  # delete() clears it
    sale.delete()
    events.sale_deleted(sale_id=sale_id)


def _database_clock() -> Func | datetime:
    """The current time as the database reads it when the statement runs (after any lock wait).

    PostgreSQL's clock_timestamp() is re-read when a waiting UPDATE re-checks its row; SQLite
    transactions begin IMMEDIATE, so a time read inside one is already after the lock.
    """
    if connection.vendor == "postgresql":
        return Func(function="clock_timestamp", output_field=DateTimeField())
    return timezone.now()


def check_window(start_time: datetime, end_time: datetime) -> None:
    """The one home of "a sale ends after it starts" (the API's serializer and the admin's form
    call it too; the database's check constraint backs it)."""
    if end_time <= start_time:
        raise InvalidSaleChange("The sale must end after it starts.", details={"endTime": ["Must be after startTime."]})


def _check_stock(original_stock: int) -> None:
    if original_stock < 1:
        raise InvalidSaleChange("A sale needs at least one unit.", details={"originalStock": ["Must be at least 1."]})
    if original_stock > MAX_STOCK:
        raise InvalidSaleChange(
            f"A sale holds at most {MAX_STOCK:,} units.",
            details={"originalStock": [f"Must be at most {MAX_STOCK}."]},
        )


def _over_cap(*, units: int, original_stock: int | None) -> InvalidSaleChange:
    room = MAX_STOCK if original_stock is None else max(MAX_STOCK - original_stock, 0)
    return InvalidSaleChange(
        f"A sale holds at most {MAX_STOCK:,} units: at most {room:,} more can be added.",
        details={"units": [f"Must be at most {room}."]},
    )


def _conflict(sale: FlashSale) -> VersionConflict:
    return VersionConflict(details={"saleId": sale.pk, "currentVersion": sale.version})
