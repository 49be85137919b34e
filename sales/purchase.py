"""The purchase: the one seam every way to buy goes through.

Here, and only here: the parser of a purchase body (`parse_order`), the rule's entry point
(`purchase`), its result (`PurchaseResult`) and the naming of its refusals (`refusal`, used for the
database's refusals and for the ones the sale gate replays from the cache). The rule itself has one
implementation per database, chosen once at start-up (`choose_backend`, from SalesConfig.ready):

- PostgreSQL: one call of the function in sales/sql/flashsale_purchase_v4.sql, which decides, writes
  and commits in one round trip (why each step is safe: sales/migrations/0002, 0004 and 0005);
- SQLite (the local default): the same decisions with the ORM, in a transaction that SQLite
  serialises (it begins IMMEDIATE, see settings).
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, IntegerField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from rest_framework.settings import api_settings

from accounts import services as accounts_services
from accounts.models import User
from core.ids import MAX_ID
from live import events
from sales import gate, metrics, queue
from sales.exceptions import (
    InsufficientStock,
    OverPurchaseLimit,
    SaleNotActive,
    SaleNotFound,
    SalePaused,
    SalesError,
    SoldOut,
    UserLimitReached,
)
from sales.models import TAKING_STATUSES, FlashSale, Purchase, PurchaseStatus, QueuePlace


@dataclass(frozen=True)
class PurchaseResult:
    """A committed purchase, the stock it left and that stock's `stock_version`; `held` until
    `expires_at` for a sale with holds, else `confirmed` (and no `expires_at`)."""

    purchase_id: int
    sale_id: int
    quantity: int
    remaining_stock: int
    timestamp: datetime
    stock_version: int
    status: str = PurchaseStatus.CONFIRMED
    expires_at: datetime | None = None


# --- the body --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    sale_id: int
    quantity: int


class InvalidOrder(ValueError):
    """A purchase body that is not `{saleId, quantity}` as JSON integers in range; `errors` maps
    each bad field to its messages, as DRF's validation errors do."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(errors)
        self.errors = errors


def parse_order(data: object) -> Order:
    """The order a decoded JSON body asks for, or InvalidOrder. The one parser of a purchase body:
    the API's serializer and the fast path (sales.fastpath) both call it."""
    if not isinstance(data, dict):
        message = f"Invalid data. Expected a dictionary, but got {type(data).__name__}."
        raise InvalidOrder({api_settings.NON_FIELD_ERRORS_KEY: [message]})
    errors: dict[str, list[str]] = {}
    sale_id = _json_integer(data, "saleId", MAX_ID, errors)
    quantity = _json_integer(data, "quantity", settings.MAX_PURCHASE_QUANTITY, errors)
    if errors:
        raise InvalidOrder(errors)
    assert sale_id is not None and quantity is not None
    return Order(sale_id=sale_id, quantity=quantity)


def _json_integer(data: dict, field: str, maximum: int, errors: dict[str, list[str]]) -> int | None:
    # No "5", no 5.0, no true: a JSON integer only (bool is an int subclass in Python).
    if field not in data:
        errors[field] = ["This field is required."]
    elif type(data[field]) is not int:
        errors[field] = ["A JSON integer is required."]
    elif data[field] < 1:
        errors[field] = ["Ensure this value is greater than or equal to 1."]
    elif data[field] > maximum:
        errors[field] = [f"Ensure this value is less than or equal to {maximum}."]
    else:
        return data[field]
    return None


@functools.cache
def purchase_paths() -> frozenset[str]:
    """The purchase's path, with and without its optional trailing slash."""
    path = reverse("purchase").rstrip("/")
    return frozenset({path, path + "/"})


# --- the rule --------------------------------------------------------------------------------


def purchase(*, user: User, sale_id: int, quantity: int) -> PurchaseResult:
    """Take `quantity` units of a live, unpaused sale for `user`, or raise a SalesError subclass.

    One statement decides: the conditional decrement takes the units and the sale's row lock, and
    "live", "not paused" and the limit per purchase are judged while that lock is held, on the
    database's clock. The units the buyer holds are read under the same lock and the purchase
    inserted before it is released, so everything commits or rolls back together.
    """
    # A sale known to be sold out, paused or outside its window is refused from the cache.
    generation = refuse_from_gate(sale_id=sale_id, moment=timezone.now())
    try:
        result = _take(user=user, sale_id=sale_id, quantity=quantity, generation=generation)
    except IntegrityError:
        # The purchase's foreign key to the user failed when the user was deleted while their
        # token was still cached; any other integrity error is a real fault.
        accounts_services.raise_if_deleted(user)
        raise
    _announce(result, user_name=user.name)
    return result


def _announce(result: PurchaseResult, *, user_name: str) -> None:
    if result.remaining_stock == 0:
        # A sell-out closes a waiting room's line: what the cache says of the line (sales.line_cache,
        # kept under the gate's generation) is out of date from the commit on.
        sale_id = result.sale_id
        transaction.on_commit(lambda: gate.forget(sale_id))
    # A failing push (Redis down) is logged, never turned into an error answer that invites a
    # second purchase: the purchase is committed by then.
    events.purchase_made(
        sale_id=result.sale_id,
        remaining_stock=result.remaining_stock,
        quantity=result.quantity,
        timestamp=result.timestamp,
        user_name=user_name,
        stock_version=result.stock_version,
        held=result.status == PurchaseStatus.HELD,
    )


def purchase_for_waiter(*, user: User, sale_id: int) -> PurchaseResult:
    """One unit of the sale for a buyer at the head of its waitlist, decided by the same rule (live,
    unpaused, in stock, within maxPerBuyer) without asking the gate: the sale clock offers returned
    units to the waitlist before it reopens the gate to everyone else (sales.waitlist)."""
    result = _take(user=user, sale_id=sale_id, quantity=1, generation=None)
    _announce(result, user_name=user.name)
    return result


def refusal(
    *,
    sale_id: int,
    moment: datetime,
    start_time: datetime,
    end_time: datetime,
    paused: bool,
    current_stock: int | None,
    quantity: int | None = None,
    purchase_limit: int | None = None,
) -> SalesError | None:
    """Name why a sale (as read after a refused decrement, or as the gate remembers it) refuses a
    purchase at `moment`; None if nothing in what is known refuses it. The first reason wins: the
    window, the pause, sold out, then what depends on the quantity (unknown to the gate)."""
    if not start_time <= moment < end_time:
        return SaleNotActive(details={"saleId": sale_id, "startTime": start_time, "endTime": end_time})
    if paused:
        return SalePaused(details={"saleId": sale_id})
    if current_stock == 0:
        return SoldOut(details={"saleId": sale_id, "currentStock": 0})
    if quantity is None:
        return None
    if purchase_limit is not None and quantity > purchase_limit:
        message = f"At most {purchase_limit} units in one purchase of this sale."
        return OverPurchaseLimit(message, details={"quantity": [message]})
    if current_stock is not None and quantity > current_stock:
        return InsufficientStock(details={"saleId": sale_id, "currentStock": current_stock, "requested": quantity})
    return None


def refuse_from_gate(*, sale_id: int, moment: datetime) -> int | None:
    """Raise the refusal the gate remembers for this sale at `moment`, if it still holds. Returns the
    gate's generation to remember a refusal under (None when the cache cannot be read)."""
    known, generation = gate.check(sale_id=sale_id)
    refused = gated_refusal(known, sale_id=sale_id, moment=moment)
    if refused is not None:
        raise refused
    return generation


def gated_refusal(known: gate.Known | None, *, sale_id: int, moment: datetime) -> SalesError | None:
    """The refusal of a purchase at `moment` that what the gate knows of this sale holds, if any,
    counted as the gate's."""
    refused = refused_by(known, sale_id=sale_id, moment=moment)
    if refused is not None:
        metrics.SALE_GATE_HITS.labels(code=refused.code).inc()
    return refused


def refused_by(known: gate.Known | None, *, sale_id: int, moment: datetime) -> SalesError | None:
    """As `gated_refusal`, without counting it: whether the gate would refuse."""
    if known is None:
        return None
    return refusal(
        sale_id=sale_id,
        moment=moment,
        start_time=known.start_time,
        end_time=known.end_time,
        paused=known.paused,
        current_stock=0 if known.sold_out else None,
    )


def _explain(*, sale_id: int, quantity: int, moment: datetime, generation: int | None, **sale: Any) -> SalesError:
    """The refusal of a decrement that matched no row, from the sale as read after it; the read
    decides nothing about stock. Refusals that hold for every buyer go to the gate, so the rest of
    the herd is answered from the cache (the refused UPDATE locked nothing meanwhile)."""
    refused = refusal(sale_id=sale_id, moment=moment, quantity=quantity, **sale)
    if isinstance(refused, (SaleNotActive, SalePaused, SoldOut)):
        known = gate.Known(sale["start_time"], sale["end_time"], sale["current_stock"] == 0, sale["paused"])
        gate.remember(sale_id=sale_id, generation=generation, known=known)
    # Nothing refuses any more (a restock committed between): this attempt still took nothing.
    return refused or InsufficientStock(
        details={"saleId": sale_id, "currentStock": sale["current_stock"], "requested": quantity}
    )


def _over_buyer_limit(*, limit: int, held: int, quantity: int) -> UserLimitReached:
    more = max(limit - held, 0)
    return UserLimitReached(
        f"Each buyer may hold at most {limit} {'unit' if limit == 1 else 'units'} of this sale: "
        f"you have {held}, so you can buy {more} more.",
        # maxUnitsPerUser: the name before limits were per sale, kept for clients that read it.
        details={"maxPerBuyer": limit, "maxUnitsPerUser": limit, "held": held, "requested": quantity},
    )


# --- the implementations -------------------------------------------------------------------

# The whole rule in one round trip: sales/sql/flashsale_purchase_v4.sql.
PURCHASE_STATEMENT = (
    "SELECT outcome, purchase_id, created_at, current_stock, stock_version, start_time, end_time, held,"
    " db_now, paused, buyer_limit, purchase_limit, status, expires_at FROM flashsale_purchase(%s, %s, %s, %s, %s)"
)


def _take_on_postgresql(*, user: User, sale_id: int, quantity: int, generation: int | None) -> PurchaseResult:
    # In autocommit (no surrounding atomic block) the statement is its own transaction: the row
    # lock is taken and released inside PostgreSQL. The idempotency layer wraps it in its own
    # transaction so the key's record commits with the purchase.
    limits = [settings.MAX_UNITS_PER_USER, settings.MAX_PURCHASE_QUANTITY]
    with connection.cursor() as cursor:
        cursor.execute(PURCHASE_STATEMENT, [user.pk, sale_id, quantity, *limits])
        row = cursor.fetchone()
    (outcome, purchase_id, at, stock, stock_version, start, end, held, db_now, paused, buyer_limit, limit) = row[:12]
    if outcome == "bought":
        status, expires_at = row[12:]
        return PurchaseResult(purchase_id, sale_id, quantity, stock, at, stock_version, status, expires_at)
    if outcome == "over_limit":
        raise _over_buyer_limit(limit=buyer_limit, held=held, quantity=quantity)
    if outcome == "not_found":
        raise SaleNotFound(details={"saleId": sale_id})
    if outcome == "not_admitted":
        # The function's refusal of a waiting-room buyer: see the column reuse in its source.
        refused = queue.admission_refusal(
            sale_id=sale_id, position=held, admitted_through=stock, rate=buyer_limit, until=row[13], moment=db_now
        )
        assert refused is not None, "the function refused an admission that runs"
        raise refused
    raise _explain(
        sale_id=sale_id,
        quantity=quantity,
        moment=db_now,
        generation=generation,
        start_time=start,
        end_time=end,
        paused=paused,
        current_stock=stock,
        purchase_limit=limit,
    )


def _take_in_python(*, user: User, sale_id: int, quantity: int, generation: int | None) -> PurchaseResult:
    """The same rule for SQLite, which serialises writers: the transaction begins IMMEDIATE
    (settings), so the write lock is held from its first line and the clock is read after it."""
    within_limit = Q(max_per_purchase__isnull=True) | Q(max_per_purchase__gte=quantity)
    if quantity > settings.MAX_PURCHASE_QUANTITY:
        within_limit = Q(pk__in=[])  # above the ceiling of every sale
    with transaction.atomic():
        moment = timezone.now()
        taken = (
            FlashSale.objects.live(moment)
            .filter(within_limit, pk=sale_id, current_stock__gte=quantity, paused=False)
            .update(current_stock=F("current_stock") - quantity, stock_version=F("stock_version") + 1)
        )
        if not taken:
            sale = FlashSale.objects.filter(pk=sale_id).first()
            if sale is None:
                raise SaleNotFound(details={"saleId": sale_id})
            raise _explain(
                sale_id=sale_id,
                quantity=quantity,
                moment=moment,
                generation=generation,
                start_time=sale.start_time,
                end_time=sale.end_time,
                paused=sale.paused,
                current_stock=sale.current_stock,
                purchase_limit=sale.purchase_limit,
            )
        stock, stock_version, max_per_buyer, hold_seconds, held, admission = _stock_and_holding(sale_id, user)
        if admission is not None:
            # A waiting-room sale sells only to buyers its line admitted (raising rolls the decrement back).
            refused = queue.admission_refusal(sale_id=sale_id, moment=moment, **admission)
            if refused is not None:
                raise refused
        limit = max_per_buyer if max_per_buyer is not None else settings.MAX_UNITS_PER_USER
        if held + quantity > limit:
            # Raising rolls the decrement back.
            raise _over_buyer_limit(limit=limit, held=held, quantity=quantity)
        status, expires_at = PurchaseStatus.CONFIRMED, None
        if hold_seconds:
            status, expires_at = PurchaseStatus.HELD, moment + timedelta(seconds=hold_seconds)
        order = Purchase.objects.create(
            user=user, sale_id=sale_id, quantity=quantity, created_at=moment, status=status, expires_at=expires_at
        )
    return PurchaseResult(order.pk, sale_id, quantity, stock, moment, stock_version, status, expires_at)


def _stock_and_holding(sale_id: int, user: User) -> tuple[int, int, int | None, int, int, dict[str, Any] | None]:
    """The sale's stock and stock version as this transaction left them, its own buyer limit, its
    hold, the units `user` holds (held or confirmed) and, for a waiting-room sale, what decides the
    buyer's admission (None for any other sale): one read."""
    held = (
        Purchase.objects.filter(sale_id=OuterRef("pk"), user=user, status__in=TAKING_STATUSES)
        .values("sale_id")
        .annotate(units=Sum("quantity"))
        .values("units")
    )
    place = QueuePlace.objects.filter(sale_id=OuterRef("pk"), user=user).order_by()
    row = (
        FlashSale.objects.filter(pk=sale_id)
        .annotate(
            held=Coalesce(Subquery(held, output_field=IntegerField()), Value(0)),
            place_position=Subquery(place.values("position")[:1]),
            place_until=Subquery(place.values("admitted_until")[:1]),
        )
        .values_list(
            "current_stock",
            "stock_version",
            "max_per_buyer",
            "hold_seconds",
            "held",
            "waiting_room",
            "admitted_through",
            "admit_per_second",
            "place_position",
            "place_until",
        )
        .get()
    )
    waiting_room, admitted_through, rate, position, until = row[5:]
    admission = None
    if waiting_room:
        admission = {"position": position, "admitted_through": admitted_through, "rate": rate, "until": until}
    return (*row[:5], admission)


_Take = Callable[..., PurchaseResult]
_take: _Take = _take_in_python


def choose_backend(vendor: str) -> None:
    """Use the rule's implementation for the database `vendor`; called once, at start-up."""
    global _take
    _take = _take_on_postgresql if vendor == "postgresql" else _take_in_python
