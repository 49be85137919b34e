"""The staff's writes of flash sales. Views and the admin call these, nothing else writes a sale
(a purchase goes through its own seam, sales.purchase)."""

from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.db.models import DateTimeField, F, Func, Q
from django.utils import timezone

from live import events
from sales import gate, queue
from sales.exceptions import (
    InvalidSaleChange,
    SaleNotActive,
    VersionConflict,
)
from sales.models import FlashSale
from sales.selectors import get_sale

# The waiting room's settings (sales.queue): editable while the sale runs, the rate included.
WAITING_ROOM_FIELDS = (
    "waiting_room",
    "admit_per_second",
    "admission_seconds",
    "queue_opens_at",
    "admission_paused",
    "join_difficulty",
)
EDITABLE_FIELDS = (
    "name",
    "start_time",
    "end_time",
    "original_stock",
    "max_per_buyer",
    "max_per_purchase",
    "hold_seconds",
    *WAITING_ROOM_FIELDS,
)
# The most units a sale may ever hold (create, edit and restock): far below the 32-bit
# original_stock/current_stock columns, so no total can overflow them.
MAX_STOCK = 10_000_000


# --- staff writes -------------------------------------------------------------------------


def create_sale(
    *,
    name: str,
    start_time: datetime,
    end_time: datetime,
    original_stock: int = 200,
    max_per_buyer: int | None = None,
    max_per_purchase: int | None = None,
    hold_seconds: int = 0,
    waiting_room: bool = False,
    admit_per_second: int = 20,
    admission_seconds: int = 120,
    queue_opens_at: datetime | None = None,
    admission_paused: bool = False,
    join_difficulty: int = 0,
) -> FlashSale:
    """A new sale; a limit left None follows its setting (MAX_UNITS_PER_USER, MAX_PURCHASE_QUANTITY).
    With `hold_seconds` > 0 its purchases are held that long, to be confirmed or released."""
    check_window(start_time, end_time)
    _check_stock(original_stock)
    sale = FlashSale.objects.create(
        name=name,
        start_time=start_time,
        end_time=end_time,
        original_stock=original_stock,
        current_stock=original_stock,
        max_per_buyer=max_per_buyer,
        max_per_purchase=max_per_purchase,
        hold_seconds=hold_seconds,
        waiting_room=waiting_room,
        admit_per_second=admit_per_second,
        admission_seconds=admission_seconds,
        queue_opens_at=queue_opens_at,
        admission_paused=admission_paused,
        join_difficulty=join_difficulty,
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
        field: changes[field]
        for field in (
            "name",
            "start_time",
            "end_time",
            "max_per_buyer",
            "max_per_purchase",
            "hold_seconds",
            *WAITING_ROOM_FIELDS,
        )
        if field in changes
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
        updates["stock_version"] = F("stock_version") + 1
    return updates


def update_sale(*, sale_id: int, expected_version: int, changes: dict[str, Any], start_now: bool = False) -> FlashSale:
    """Apply `changes` (a subset of EDITABLE_FIELDS) only if the sale is still at `expected_version`.

    Only staff edits (this, and ending a sale) bump the version, so an edit made from a copy read
    before another staff edit is refused (VersionConflict) instead of silently overwriting it, while
    purchases, restocks and pauses never make an edit stale. Stock never comes from the caller's
    copy: a new `original_stock` moves `current_stock` by the same delta in the database (and bumps
    `stock_version`, which orders live stock pushes). Changes equal to
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
        if "stock_version" in updates:
            events.stock_changed(sale_id=sale_id, current_stock=sale.current_stock, stock_version=sale.stock_version)
    return sale


def add_units(*, sale_id: int, units: int) -> FlashSale:
    """Restock: grow original and current stock together, safe during a live herd. Not a staff edit
    of the sale's settings: it bumps `stock_version` only, so it never makes an open edit stale."""
    if units < 1:
        raise InvalidSaleChange("Add at least one unit.", details={"units": ["Must be at least 1."]})
    if units > MAX_STOCK:
        raise _over_cap(units=units, original_stock=None)
    with transaction.atomic():
        # The cap is judged on the stock as the UPDATE finds it, so concurrent restocks cannot pass it together.
        written = FlashSale.objects.filter(pk=sale_id, original_stock__lte=MAX_STOCK - units).update(
            original_stock=F("original_stock") + units,
            current_stock=F("current_stock") + units,
            stock_version=F("stock_version") + 1,
        )
        if not written:
            stored = get_sale(sale_id)
            raise _over_cap(units=units, original_stock=stored.original_stock)
        sale = FlashSale.objects.get(pk=sale_id)
        # A restock must sell again at once: the gate forgets "sold out" as soon as this commits.
        transaction.on_commit(partial(gate.forget, sale_id))
        events.stock_changed(sale_id=sale_id, current_stock=sale.current_stock, stock_version=sale.stock_version)
    return sale


def end_sale_now(*, sale_id: int) -> FlashSale:
    """Close a live sale immediately. A pending sale cannot be ended; a finished one is left alone.

    The end is the database's clock once this UPDATE holds the sale's row lock: every purchase
    committed before it has an earlier timestamp, every purchase waiting behind it sees the sale
    ended, so the units sold in the answer are final. It bumps `version`: it moves the end, which a
    stale edit must not move back.
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


def pause_sale(*, sale_id: int) -> FlashSale:
    """Stop a sale that has not ended from selling until `resume_sale`; pausing a paused sale is a
    no-op. The window and the status stay as they are.

    The UPDATE takes the sale's row lock, so a purchase waiting behind it re-checks the row and is
    refused (sale_paused): no purchase is stamped after the pause commits. Not a staff edit of the
    sale's settings (no `version` bump): no edit form writes `paused`, so none can undo it.
    """
    return _set_paused(sale_id=sale_id, paused=True)


def resume_sale(*, sale_id: int) -> FlashSale:
    """Let a paused sale sell again (within its window); resuming a sale that is not paused is a no-op."""
    return _set_paused(sale_id=sale_id, paused=False)


def _set_paused(*, sale_id: int, paused: bool) -> FlashSale:
    with transaction.atomic():
        selected = FlashSale.objects.filter(pk=sale_id)
        if paused:
            selected = selected.filter(end_time__gt=_database_clock())
        written = selected.exclude(paused=paused).update(paused=paused)
        sale = get_sale(sale_id)
        if paused and not written and not sale.paused:
            raise SaleNotActive(
                "Only a sale that has not ended can be paused.",
                details={"saleId": sale_id, "startTime": sale.start_time, "endTime": sale.end_time},
            )
        if written:
            # First, so the gate forgets a remembered pause before anyone is told of the resume.
            transaction.on_commit(partial(gate.forget, sale_id))
            events.sale_changed(sale_id=sale_id)
    return sale


def delete_sale(*, sale: FlashSale) -> None:
    """Delete a sale that is not live; one with purchases is kept by the database (PROTECT)."""
    if sale.is_live_at(timezone.now()):
        raise InvalidSaleChange("A live sale cannot be deleted; end it first.", details={"saleId": sale.pk})
    sale_id = sale.pk  # delete() clears it
    with transaction.atomic():
        sale.delete()
        queue.forget_line(sale_id)
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
