"""The waiting room: buyers of a sale with `waiting_room` take places in a line, and the sale clock
numbers them (sales.queue.number_places, one call in its tick).

A join is one INSERT into its own row (QueuePlace, unique per sale and buyer): no row is updated by
every join, so joins never wait for each other. Places taken before the start (the pre-queue) get
their positions from the sale clock's draw at the start, a uniform shuffle, so arriving a
millisecond before someone else buys nothing. After the draw a join takes the next position in the
same INSERT, from a sequence of the sale's own on PostgreSQL (sequences are never locked by a
transaction, so joins still do not wait for each other) and from the highest position plus one on
SQLite (which has one writer at a time anyway): arrival order as the database recorded it, answered
at once. A place whose insert raced the draw is numbered by the clock's next step.
"""

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import User
from sales import join_challenge, selectors
from sales.exceptions import (
    AdmissionExpired,
    NotAdmitted,
    NotInQueue,
    NoWaitingRoom,
    QueueNotOpen,
    SaleNotActive,
    SaleNotFound,
    SalesError,
    SoldOut,
)
from sales.models import QUEUE_OPENS_BEFORE, TAKING_STATUSES, FlashSale, Purchase, QueuePlace


class QueueStatus:
    WAITING = "waiting"
    ADMITTED = "admitted"
    EXPIRED = "expired"
    CLOSED = "closed"
    ALL = (WAITING, ADMITTED, EXPIRED, CLOSED)


@dataclass(frozen=True)
class PlaceView:
    """A buyer's place as they see it: `position` (and what follows from it) is None while the place
    waits in the pre-queue for the draw."""

    sale_id: int
    status: str
    position: int | None
    ahead_of_you: int | None
    estimated_wait_seconds: int | None
    admitted_until: datetime | None
    created: bool = False


def join(*, user: User, sale_id: int, challenge: Any = None, solution: Any = None) -> PlaceView:
    """Take `user`'s place in the sale's waiting room, or answer the place they already hold (without
    asking for a new proof of work). A sale with a join difficulty takes a place only for a solved
    challenge of this buyer for this sale (sales.join_challenge), each solution once."""
    if challenge is None and solution is None and connection.vendor == "postgresql":
        # The herd's join: a first one, for a sale open to it without a proof of work.
        placed = _join_at_once(user=user, sale_id=sale_id, moment=timezone.now())
        if placed is not None:
            return placed
    sale = _sale(sale_id)
    existing = QueuePlace.objects.filter(sale_id=sale_id, user=user).first()
    if existing is not None:
        return view(sale=sale, place=existing)
    now = timezone.now()
    if sale.end_time <= now:
        raise SaleNotActive(details={"saleId": sale_id, "startTime": sale.start_time, "endTime": sale.end_time})
    if sale.current_stock == 0:
        raise SoldOut(details={"saleId": sale_id, "currentStock": 0})
    if now < sale.queue_opening:
        raise QueueNotOpen(details={"saleId": sale_id, "queueOpensAt": sale.queue_opening})
    if sale.join_difficulty:
        join_challenge.redeem(user=user, sale=sale, challenge=challenge, solution=solution)
    place = _insert_place(sale=sale, user=user, moment=now)
    if place is None:
        # A twin request took the place between the read and the insert (the unique constraint).
        return view(sale=sale, place=QueuePlace.objects.get(sale_id=sale_id, user=user))
    return view(sale=sale, place=place, created=True)


# A first join in one round trip: the sale's rules read and the place inserted in one statement,
# which answers nothing when any rule refuses or the buyer already has a place, so that the
# explaining path below (its own reads, the same order of checks) names the answer. The position's
# nextval() is reached only for a sale that passed every rule and a buyer without a place: a repeat
# join takes no number. The `sale` CTE is read twice, so PostgreSQL evaluates it once.
_JOIN_AT_ONCE_SQL = f"""
WITH sale AS (
    SELECT id, start_time, end_time, current_stock, admitted_through, admit_per_second, queue_drawn_at
      FROM {FlashSale._meta.db_table}
     WHERE id = %(sale)s AND waiting_room AND join_difficulty = 0
       AND end_time > %(now)s AND current_stock > 0
       AND COALESCE(queue_opens_at, start_time - %(opens_before)s * interval '1 second') <= %(now)s
       AND NOT EXISTS (SELECT 1 FROM {QueuePlace._meta.db_table} WHERE sale_id = %(sale)s AND user_id = %(user)s)
), placed AS (
    INSERT INTO {QueuePlace._meta.db_table} (sale_id, user_id, joined_at, pre_queue, position, numbered_at)
    SELECT sale.id, %(user)s, %(now)s, %(now)s < sale.start_time, numbering.position,
           CASE WHEN numbering.position IS NULL THEN NULL ELSE %(now)s END
      FROM sale CROSS JOIN LATERAL (
           SELECT CASE WHEN sale.queue_drawn_at IS NULL THEN NULL
                       ELSE nextval(to_regclass(%(sequence)s)) END AS position) AS numbering
        ON CONFLICT (sale_id, user_id) DO NOTHING
    RETURNING position
)
SELECT placed.position, sale.current_stock, sale.end_time, sale.admitted_through, sale.admit_per_second
  FROM placed CROSS JOIN sale
"""


def _join_at_once(*, user: User, sale_id: int, moment: datetime) -> PlaceView | None:
    """The new place of a first join that every rule allows without a proof of work, from one
    statement (PostgreSQL); None when the explaining path must answer."""
    with connection.cursor() as cursor:
        cursor.execute(
            _JOIN_AT_ONCE_SQL,
            {
                "sale": sale_id,
                "user": user.pk,
                "now": moment,
                "opens_before": QUEUE_OPENS_BEFORE.total_seconds(),
                "sequence": _position_sequence(sale_id),
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    position, *line = row
    return place_view(LineState(sale_id, *line), position=position, admitted_until=None, moment=moment, created=True)


def _insert_place(*, sale: FlashSale, user: User, moment: datetime) -> QueuePlace | None:
    """One statement: the place, numbered at once once the sale's line is drawn; None when the
    buyer already has one (ON CONFLICT DO NOTHING, no savepoint)."""
    numbered = sale.queue_drawn_at is not None
    position_sql, position_params = _next_position(sale.pk) if numbered else ("CAST(NULL AS integer)", [])
    table = QueuePlace._meta.db_table
    at = connection.ops.adapt_datetimefield_value(moment)
    with connection.cursor() as cursor:
        # INSERT ... SELECT, so numbered_at is set only when a position was; SQLite needs the WHERE
        # to read ON CONFLICT as the INSERT's clause.
        cursor.execute(
            f"INSERT INTO {table} (sale_id, user_id, joined_at, pre_queue, position, numbered_at) "
            "SELECT %s, %s, %s, %s, numbering.position, CASE WHEN numbering.position IS NULL THEN NULL ELSE %s END "
            f"FROM (SELECT {position_sql} AS position) AS numbering WHERE true "
            "ON CONFLICT (sale_id, user_id) DO NOTHING RETURNING id, position",
            [sale.pk, user.pk, at, moment < sale.start_time, at, *position_params],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    place_id, position = row
    return QueuePlace(
        pk=place_id,
        sale_id=sale.pk,
        user=user,
        joined_at=moment,
        pre_queue=moment < sale.start_time,
        position=position,
        numbered_at=moment if position is not None else None,
    )


def _position_sequence(sale_id: int) -> str:
    return f"flashsale_queue_positions_{int(sale_id)}"


def _next_position(sale_id: int) -> tuple[str, list]:
    """SQL for the next position of a drawn line. On PostgreSQL nextval() on the sale's sequence:
    never rolled back, so a place whose insert fails (a twin's) leaves a gap of one, which admits
    nobody and costs one place of outflow; NULL while the sequence does not exist yet (nextval() of
    a NULL is NULL), a place the clock's next step numbers. On SQLite the statement holds the only
    write lock."""
    if connection.vendor == "postgresql":
        return "nextval(to_regclass(%s))", [_position_sequence(sale_id)]
    table = QueuePlace._meta.db_table
    return f"(SELECT COALESCE(MAX(position), 0) + 1 FROM {table} WHERE sale_id = %s)", [sale_id]


def _start_position_sequence(sale_id: int, *, after: int) -> None:
    """The draw's last act, in its transaction: later joins number themselves from `after` + 1."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            name = connection.ops.quote_name(_position_sequence(sale_id))
            cursor.execute(f"CREATE SEQUENCE IF NOT EXISTS {name} START WITH {int(after) + 1}")


def forget_line(sale_id: int) -> None:
    """Drop a deleted sale's position sequence (inside the deleting transaction)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SEQUENCE IF EXISTS {connection.ops.quote_name(_position_sequence(sale_id))}")


def challenge_for(*, user: User, sale_id: int) -> join_challenge.IssuedChallenge:
    """A challenge for `user` to solve before joining the sale's waiting room (none at difficulty 0)."""
    return join_challenge.issue(user=user, sale=_sale(sale_id))


def place_of(*, user: User, sale_id: int) -> PlaceView:
    """The caller's place in the sale's waiting room, or NotInQueue."""
    # Every buyer in a line polls this: the place and its sale in one read of the (sale, user) unique
    # index, in SQL written once (compiling the ORM's join cost more than running it); the sale alone
    # is read only to explain a refusal.
    with connection.cursor() as cursor:
        cursor.execute(_PLACE_SQL, [sale_id, user.pk])
        row = cursor.fetchone()
    if row is None:
        _sale(sale_id)
        raise NotInQueue(details={"saleId": sale_id})
    position, admitted_until, waiting_room, current_stock, end_time, admitted_through, rate = row
    if not waiting_room:
        raise NoWaitingRoom(details={"saleId": sale_id})
    end_time = _from_db(end_time, FlashSale._meta.get_field("end_time"))
    return place_view(
        LineState(sale_id, current_stock, end_time, admitted_through, rate),
        position=position,
        admitted_until=_from_db(admitted_until, QueuePlace._meta.get_field("admitted_until")),
        moment=timezone.now(),
        created=False,
    )


_PLACE_SQL = f"""
SELECT place.position, place.admitted_until,
       sale.waiting_room, sale.current_stock, sale.end_time, sale.admitted_through, sale.admit_per_second
  FROM {QueuePlace._meta.db_table} AS place JOIN {FlashSale._meta.db_table} AS sale ON sale.id = place.sale_id
 WHERE place.sale_id = %s AND place.user_id = %s
"""


def _from_db(value: Any, field: Any) -> Any:
    """A raw row's value as the ORM would load it (SQLite hands datetimes back as text)."""
    for convert in connection.ops.get_db_converters(field.get_col(field.model._meta.db_table)):
        value = convert(value, field, connection)
    return value


@dataclass(frozen=True)
class LineState:
    """What a place's answer needs of its sale: whether the line is still open and how far it moved."""

    sale_id: int
    current_stock: int
    end_time: datetime
    admitted_through: int
    admit_per_second: int

    @classmethod
    def of(cls, sale: FlashSale) -> "LineState":
        return cls(sale.pk, sale.current_stock, sale.end_time, sale.admitted_through, sale.admit_per_second)


def view(*, sale: FlashSale, place: QueuePlace, created: bool = False) -> PlaceView:
    return place_view(
        LineState.of(sale),
        position=place.position,
        admitted_until=place.admitted_until,
        moment=timezone.now(),
        created=created,
    )


def place_view(
    line: LineState,
    *,
    position: int | None,
    admitted_until: datetime | None,
    moment: datetime,
    created: bool,
) -> PlaceView:
    ahead, wait = _wait(position=position, admitted_through=line.admitted_through, rate=line.admit_per_second)
    if line.current_stock == 0 or line.end_time <= moment:
        status = QueueStatus.CLOSED
    elif position is None or position > line.admitted_through:
        status = QueueStatus.WAITING
    elif admitted_until is not None and admitted_until > moment:
        status = QueueStatus.ADMITTED
    else:
        status = QueueStatus.EXPIRED
    return PlaceView(
        sale_id=line.sale_id,
        status=status,
        position=position,
        ahead_of_you=ahead,
        estimated_wait_seconds=wait,
        admitted_until=admitted_until,
        created=created,
    )


def _wait(*, position: int | None, admitted_through: int, rate: int) -> tuple[int | None, int | None]:
    if position is None:
        return None, None
    ahead = max(0, position - admitted_through - 1)
    return ahead, math.ceil(ahead / rate)


def admission_refusal(
    *,
    sale_id: int,
    position: int | None,
    admitted_through: int,
    rate: int,
    until: datetime | None,
    moment: datetime,
) -> SalesError | None:
    """Why a buyer with this place may not buy at `moment`, or None when their admission runs. The
    purchase rule asks it under the sale's row lock (SQLite, sales.purchase) or decides the same in
    SQL and names the refusal with it (PostgreSQL, flashsale_purchase_v4)."""
    if position is None or position > admitted_through or until is None:
        ahead, wait = _wait(position=position, admitted_through=admitted_through, rate=rate)
        return NotAdmitted(
            details={"saleId": sale_id, "position": position, "aheadOfYou": ahead, "estimatedWaitSeconds": wait}
        )
    if until <= moment:
        return AdmissionExpired(details={"saleId": sale_id, "admittedUntil": until})
    return None


def _sale(sale_id: int) -> FlashSale:
    sale = FlashSale.objects.filter(pk=sale_id).first()
    if sale is None:
        raise SaleNotFound(details={"saleId": sale_id})
    if not sale.waiting_room:
        raise NoWaitingRoom(details={"saleId": sale_id})
    return sale


# --- the sale clock's step -----------------------------------------------------------------------


def number_places() -> int:
    """Give every started waiting-room sale's unnumbered places their positions: at the first step
    after the start, the pre-queue in a uniform shuffle (recorded as the sale's queue_drawn_at), then
    every later place in id order after the places already numbered. Returns how many were numbered."""
    now = timezone.now()
    sales = FlashSale.objects.filter(waiting_room=True, start_time__lte=now, end_time__gt=now)
    numbered = 0
    unnumbered = QueuePlace.objects.filter(sale=OuterRef("pk"), position__isnull=True)
    for sale_id in sales.filter(Q(queue_drawn_at__isnull=True) | Exists(unnumbered)).values_list("pk", flat=True):
        numbered += _number_sale(sale_id, moment=now)
    return numbered


def admit() -> int:
    """Advance every live, unpaused, in-stock waiting-room sale's admission (the sale clock's step):
    `admit_per_second` places for each second since the last step, never more than the stock can
    still serve. Returns how many places were admitted."""
    now = timezone.now()
    drawn = FlashSale.objects.live(now).filter(waiting_room=True).exclude(queue_drawn_at=None)
    admitting = Q(paused=False, admission_paused=False, current_stock__gt=0)
    # A held line (paused, or sold out until a restock) does not save up its outflow: resumed, it
    # goes on at the rate from the moment it was last held, not with a burst of the time it missed.
    drawn.exclude(admitting).update(admitted_at=now)
    sale_ids = drawn.filter(admitting).values_list("pk", flat=True)
    return sum(_admit_sale(sale_id, moment=now) for sale_id in list(sale_ids))


def admitted_not_bought(sale_id: int, *, moment: datetime) -> int:
    """Places whose admission runs at `moment` and whose buyer holds no unit of the sale yet: each
    may still take a unit, so they count against the stock the next admission may serve."""
    return _admitted_not_bought_places(sale_id, moment=moment).count()


def _admitted_not_bought_places(sale_id: int, *, moment: datetime) -> QuerySet[QueuePlace]:
    bought = Purchase.objects.filter(sale_id=sale_id, user=OuterRef("user"), status__in=TAKING_STATUSES)
    return QueuePlace.objects.filter(sale_id=sale_id, admitted_until__gt=moment).exclude(Exists(bought))


def _room(sale_id: int, *, moment: datetime) -> int:
    """The stock left minus the admitted buyers who may still take a unit, read in ONE statement: a
    purchase commits its stock and its buyer together, so one snapshot sees both or neither. Read
    apart, a purchase committing between the two reads counted its unit as gone and its buyer as
    not bought-yet no more, and the step admitted one buyer past the stock (the cluster test saw 31
    admitted for 30 units)."""
    pending = (
        _admitted_not_bought_places(sale_id, moment=moment)
        .order_by()
        .values("sale_id")
        .annotate(count=Count("pk"))
        .values("count")
    )
    stock, not_bought = (
        FlashSale.objects.filter(pk=sale_id).values_list("current_stock", Coalesce(Subquery(pending), 0)).get()
    )
    return stock - not_bought


@dataclass(frozen=True)
class LineSummary:
    """What staff watch of a waiting room: its places, how far admission reached, and the admitted
    buyers who may still buy."""

    queue_length: int
    admitted_through: int
    admitted_not_bought: int


def line_summary(sale: FlashSale) -> LineSummary:
    return LineSummary(
        queue_length=selectors.queue_length(sale.pk),
        admitted_through=sale.admitted_through,
        admitted_not_bought=admitted_not_bought(sale.pk, moment=timezone.now()),
    )


def _admit_sale(sale_id: int, *, moment: datetime) -> int:
    sale = FlashSale.objects.get(pk=sale_id)
    since = sale.admitted_at or sale.queue_drawn_at or moment
    allowance = int((moment - since).total_seconds() * sale.admit_per_second)
    if allowance < 1:
        return 0
    room = _room(sale_id, moment=moment)
    numbered = QueuePlace.objects.filter(sale_id=sale_id).aggregate(last=Max("position"))["last"] or 0
    admitted = max(0, min(allowance, room, numbered - sale.admitted_through))
    # At full rate the step keeps the fraction of a place it did not admit; held back by the stock
    # or by an empty line, the outflow does not save up a burst for later.
    advanced_to = since + timedelta(seconds=admitted / sale.admit_per_second) if admitted == allowance else moment
    through = sale.admitted_through + admitted
    with transaction.atomic():
        # Conditional on the step it read: a second clock (a failover's overlap) changes nothing.
        moved = FlashSale.objects.filter(pk=sale_id, admitted_through=sale.admitted_through).update(
            admitted_through=through, admitted_at=advanced_to
        )
        if not moved:
            return 0
        QueuePlace.objects.filter(sale_id=sale_id, position__gt=sale.admitted_through, position__lte=through).update(
            admitted_until=moment + timedelta(seconds=sale.admission_seconds)
        )
    return admitted


# The operating system's randomness: a draw nobody can predict from earlier draws.
_shuffler = random.SystemRandom()


def _number_sale(sale_id: int, *, moment: datetime) -> int:
    try:
        with transaction.atomic():
            unnumbered = list(QueuePlace.objects.filter(sale_id=sale_id, position__isnull=True).order_by("id"))
            drawn = FlashSale.objects.filter(pk=sale_id, queue_drawn_at__isnull=True).update(queue_drawn_at=moment)
            if not drawn:
                return _number_stragglers(sale_id, unnumbered, moment=moment)
            last = QueuePlace.objects.filter(sale_id=sale_id).aggregate(last=Max("position"))["last"] or 0
            pre_queue = [place for place in unnumbered if place.pre_queue]
            _shuffler.shuffle(pre_queue)
            unnumbered = pre_queue + [place for place in unnumbered if not place.pre_queue]
            for offset, place in enumerate(unnumbered, start=1):
                place.position, place.numbered_at = last + offset, moment
            _save_positions(unnumbered, moment=moment)
            _start_position_sequence(sale_id, after=last + len(unnumbered))
    except IntegrityError:
        # Another sale clock (a failover's overlap) numbered these places first: its numbers stand.
        return 0
    return len(unnumbered)


# The draw numbers the whole pre-queue in one step at the start, when the clock is needed most: one
# statement for every place, where bulk_update's CASE statements cost many times more per place
# (docs/performance.md, "Waiting room"). The ids and positions come from the draw's own read of the
# unnumbered places; a second clock numbering them at the same time meets the (sale, position)
# unique constraint, as it did with bulk_update.
_SAVE_POSITIONS_SQL = f"""
UPDATE {QueuePlace._meta.db_table} AS place
   SET position = numbered.position, numbered_at = %s
  FROM unnest(%s::bigint[], %s::integer[]) AS numbered(id, position)
 WHERE place.id = numbered.id
"""


def _save_positions(places: list[QueuePlace], *, moment: datetime) -> None:
    if connection.vendor != "postgresql":
        QueuePlace.objects.bulk_update(places, ["position", "numbered_at"], batch_size=1000)
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _SAVE_POSITIONS_SQL, [moment, [place.pk for place in places], [place.position for place in places]]
        )


def _number_stragglers(sale_id: int, places: list[QueuePlace], *, moment: datetime) -> int:
    """Places whose insert raced the draw (it read the line undrawn, committed after it) take the
    next positions as a join would; conditional, so an overlapping clock numbers each only once."""
    if connection.vendor == "postgresql":
        # A line drawn before joins numbered themselves has no sequence yet.
        last = QueuePlace.objects.filter(sale_id=sale_id).aggregate(last=Max("position"))["last"] or 0
        _start_position_sequence(sale_id, after=last)
    position_sql, position_params = _next_position(sale_id)
    numbered = 0
    for place in places:
        numbered += QueuePlace.objects.filter(pk=place.pk, position__isnull=True).update(
            position=RawSQL(position_sql, position_params), numbered_at=moment
        )
    return numbered
