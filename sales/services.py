"""The rules that write flash sales and purchases. Views and the admin call these, nothing else
writes a sale."""

from datetime import datetime
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F, IntegerField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import User
from sales import events, gate
from sales.exceptions import (
    InsufficientStock,
    InvalidSaleChange,
    NoActiveSale,
    SaleNotActive,
    SaleNotFound,
    SoldOut,
    UserLimitReached,
    VersionConflict,
)
from sales.models import FlashSale, Purchase

EDITABLE_FIELDS = ("name", "start_time", "end_time", "original_stock")


# --- reads --------------------------------------------------------------------------------


def get_sale(sale_id: int) -> FlashSale:
    try:
        return FlashSale.objects.get(pk=sale_id)
    except FlashSale.DoesNotExist:
        raise SaleNotFound(details={"saleId": sale_id}) from None


def active_sale(moment: datetime | None = None) -> FlashSale:
    """The sale buyers can buy from now; when several are, the one ending first."""
    sale = FlashSale.objects.active(moment or timezone.now()).order_by("end_time", "id").first()
    if sale is None:
        raise NoActiveSale()
    return sale


# --- the purchase rule --------------------------------------------------------------------


def purchase(*, user: User, sale_id: int, quantity: int) -> Purchase:
    """Take `quantity` units of a live sale for `user`, or raise a SalesError subclass.

    The conditional UPDATE is the only thing that decides whether stock exists: it takes the
    units and the sale's row lock in one statement. While the lock is held we read the user's
    holding (which no concurrent purchase of this sale can change) and insert the purchase;
    everything commits or rolls back together.
    """
    cap = settings.MAX_UNITS_PER_USER
    if quantity > cap:
        raise UserLimitReached(details={"maxUnitsPerUser": cap, "held": None, "requested": quantity})
    moment = timezone.now()
    # A sale known to be sold out or outside its window is refused from the cache, with no DB access.
    generation = gate.check(sale_id=sale_id, moment=moment)
    with transaction.atomic():
        taken = (
            FlashSale.objects.live(moment)
            .filter(pk=sale_id, current_stock__gte=quantity)
            .update(current_stock=F("current_stock") - quantity, version=F("version") + 1)
        )
        if not taken:
            raise _why_not_taken(sale_id, quantity, moment, generation)
        current_stock, version, held = _stock_and_holding(sale_id, user)
        if held + quantity > cap:
            # Raising rolls the decrement back.
            raise UserLimitReached(details={"maxUnitsPerUser": cap, "held": held, "requested": quantity})
        order = Purchase.objects.create(user=user, sale_id=sale_id, quantity=quantity)
        # robust: the purchase is committed by then; a failing push (Redis down, a query in the
        # event) is logged, never turned into an error answer that invites a second purchase.
        # (A named function, not a partial: Django's robust error path reads __qualname__.)
        def announce_purchase():
            events.purchase_made(purchase=order, current_stock=current_stock, version=version)

        transaction.on_commit(announce_purchase, robust=True)
    order.remaining_stock = current_stock
    return order


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


def _why_not_taken(sale_id: int, quantity: int, moment: datetime, generation: int | None = None) -> Exception:
    """Explain a refused decrement with one read; the read decides nothing about stock.

    Refusals that hold for everyone (sold out, outside the window) are handed to the gate so the
    rest of the herd is answered from the cache. The refused UPDATE matched no row, so no row lock
    is held while the cache is written.
    """
    sale = FlashSale.objects.filter(pk=sale_id).only("start_time", "end_time", "current_stock").first()
    if sale is None:
        return SaleNotFound(details={"saleId": sale_id})
    remember = partial(gate.remember, sale_id=sale_id, generation=generation,
                       start_time=sale.start_time, end_time=sale.end_time)
    if not sale.is_live_at(moment):
        return remember(refusal=SaleNotActive(
            details={"saleId": sale_id, "startTime": sale.start_time, "endTime": sale.end_time}
        ))
    if sale.current_stock == 0:
        return remember(refusal=SoldOut(details={"saleId": sale_id, "currentStock": 0}))
    return InsufficientStock(
        details={"saleId": sale_id, "currentStock": sale.current_stock, "requested": quantity}
    )


# --- staff writes -------------------------------------------------------------------------


def create_sale(*, name: str, start_time: datetime, end_time: datetime, original_stock: int = 200) -> FlashSale:
    _check_window(start_time, end_time)
    _check_stock(original_stock)
    sale = FlashSale.objects.create(
        name=name,
        start_time=start_time,
        end_time=end_time,
        original_stock=original_stock,
        current_stock=original_stock,
    )
    transaction.on_commit(partial(events.sale_changed, sale_id=sale.pk))
    return sale


def check_sale_update(*, sale: FlashSale, expected_version: int, changes: dict) -> dict:
    """The column updates `update_sale` would write for `changes` to `sale` (as read), or the
    VersionConflict/InvalidSaleChange it would raise. Writes nothing.

    The admin calls it while validating a form, so a refused edit is shown next to its fields;
    `update_sale` runs it again and still writes only if the version matches.
    """
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    if sale.version != expected_version:
        raise _conflict(sale)
    now = timezone.now()
    start_time = changes.get("start_time", sale.start_time)
    end_time = changes.get("end_time", sale.end_time)
    _check_window(start_time, end_time)
    if sale.start_time <= now:
        if start_time != sale.start_time:
            raise InvalidSaleChange(
                "A sale that has started cannot have its start moved.", details={"startTime": ["The sale has already started."]}
            )
        if end_time < sale.end_time and sale.end_time > now:
            raise InvalidSaleChange(
                "A live sale cannot be shortened; end it explicitly instead.",
                details={"endTime": ["A live sale cannot be shortened."]},
            )
    updates = {field: changes[field] for field in ("name", "start_time", "end_time") if field in changes}
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


def update_sale(*, sale_id: int, expected_version: int, changes: dict) -> FlashSale:
    """Apply `changes` (a subset of EDITABLE_FIELDS) only if the sale is still at `expected_version`.

    Any purchase bumps the version too, so an edit made from a copy read before it is refused
    (VersionConflict) instead of silently overwriting it. Stock never comes from the caller's copy:
    a new `original_stock` moves `current_stock` by the same delta in the database.
    """
    sale = get_sale(sale_id)
    updates = check_sale_update(sale=sale, expected_version=expected_version, changes=changes)
    with transaction.atomic():
        written = FlashSale.objects.filter(pk=sale_id, version=expected_version).update(
            **updates, version=F("version") + 1
        )
        if not written:
            raise _conflict(get_sale(sale_id))
        sale.refresh_from_db()
        # First, so the gate reopens before anyone is told the sale changed.
        transaction.on_commit(partial(gate.forget, sale_id))
        transaction.on_commit(partial(events.sale_changed, sale_id=sale_id))
        transaction.on_commit(
            partial(events.stock_changed, sale_id=sale_id, current_stock=sale.current_stock, version=sale.version)
        )
    return sale


def add_units(*, sale_id: int, units: int) -> FlashSale:
    """Restock: grow original and current stock together, safe during a live herd (no version check)."""
    if units < 1:
        raise InvalidSaleChange("Add at least one unit.", details={"units": ["Must be at least 1."]})
    with transaction.atomic():
        written = FlashSale.objects.filter(pk=sale_id).update(
            original_stock=F("original_stock") + units,
            current_stock=F("current_stock") + units,
            version=F("version") + 1,
        )
        if not written:
            raise SaleNotFound(details={"saleId": sale_id})
        sale = FlashSale.objects.get(pk=sale_id)
        # A restock must sell again at once: the gate forgets "sold out" as soon as this commits.
        transaction.on_commit(partial(gate.forget, sale_id))
        transaction.on_commit(
            partial(events.stock_changed, sale_id=sale_id, current_stock=sale.current_stock, version=sale.version)
        )
    return sale


def end_sale_now(*, sale_id: int) -> FlashSale:
    """Close a live sale immediately. A pending sale cannot be ended; a finished one is left alone."""
    now = timezone.now()
    with transaction.atomic():
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
        transaction.on_commit(partial(events.sale_changed, sale_id=sale_id))
    return sale


def _check_window(start_time: datetime, end_time: datetime) -> None:
    if end_time <= start_time:
        raise InvalidSaleChange(
            "The sale must end after it starts.", details={"endTime": ["Must be after startTime."]}
        )


def _check_stock(original_stock: int) -> None:
    if original_stock < 1:
        raise InvalidSaleChange(
            "A sale needs at least one unit.", details={"originalStock": ["Must be at least 1."]}
        )


def _conflict(sale: FlashSale) -> VersionConflict:
    return VersionConflict(details={"saleId": sale.pk, "currentVersion": sale.version})
