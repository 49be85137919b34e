"""Read-only checks of the sales invariants, for `manage.py auditsales`.

Each check returns human-readable violations; none writes anything. They are plain aggregate
queries, so the audit can run against a live database (it sees one consistent snapshot per query;
run it when no purchase herd is in flight for an exact cross-check between queries).
"""

from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from idempotency import selectors as idempotency_selectors
from sales.models import TAKING_STATUSES, FlashSale, Purchase, PurchaseStatus, QueuePlace, WaitlistEntry


@dataclass
class AuditReport:
    sales: int = 0
    purchases: int = 0
    idempotency_keys: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def run_audit(*, max_units_per_user: int | None = None) -> AuditReport:
    cap = max_units_per_user if max_units_per_user is not None else settings.MAX_UNITS_PER_USER
    report = AuditReport(
        sales=FlashSale.objects.count(),
        purchases=Purchase.objects.count(),
        idempotency_keys=idempotency_selectors.key_count(),
    )
    report.violations += stock_violations()
    report.violations += per_user_cap_violations(cap)
    report.violations += window_violations()
    report.violations += idempotency_violations()
    report.violations += hold_violations()
    report.violations += admission_violations()
    return report


def stock_violations() -> list[str]:
    """original − current == Σ quantities of held and confirmed purchases for every sale;
    0 <= current <= original."""
    sold = (
        Purchase.objects.filter(sale_id=OuterRef("pk"), status__in=TAKING_STATUSES)
        .values("sale_id")
        .annotate(units=Sum("quantity"))
        .values("units")
    )
    sales = FlashSale.objects.annotate(
        sold=Coalesce(Subquery(sold, output_field=IntegerField()), Value(0))
    ).values_list("pk", "name", "original_stock", "current_stock", "sold")
    found = []
    for sale_id, name, original, current, units in sales.order_by("pk"):
        if original - current != units:
            found.append(
                f"sale {sale_id} ({name!r}): original {original} - current {current} = {original - current}, "
                f"but its purchases hold {units} units"
            )
        if current < 0:
            found.append(f"sale {sale_id} ({name!r}): negative stock {current}")
        if current > original:
            found.append(f"sale {sale_id} ({name!r}): current stock {current} above original {original}")
    return found


def window_violations() -> list[str]:
    """Every purchase was made while its sale was live: start_time <= created_at < end_time."""
    outside = (
        Purchase.objects.filter(Q(created_at__lt=F("sale__start_time")) | Q(created_at__gte=F("sale__end_time")))
        .values_list("pk", "sale_id", "created_at", "sale__start_time", "sale__end_time")
        .order_by("sale_id", "pk")
    )
    return [
        f"purchase {pk} of sale {sale_id} at {created_at.isoformat()} is outside the sale's window "
        f"[{start.isoformat()}, {end.isoformat()})"
        for pk, sale_id, created_at, start, end in outside
    ]


def per_user_cap_violations(cap: int) -> list[str]:
    """No buyer holds more of a sale than its own limit (maxPerBuyer), or `cap` for a sale without one.
    A limit lowered after buyers bought reports those buyers too: they hold more than it allows now."""
    over = (
        Purchase.objects.filter(status__in=TAKING_STATUSES)
        .values("sale_id", "user_id")
        .annotate(
            units=Sum("quantity"),
            purchases=Count("pk"),
            limit=Coalesce(F("sale__max_per_buyer"), Value(cap), output_field=IntegerField()),
        )
        .filter(units__gt=F("limit"))
        .order_by("sale_id", "user_id")
    )
    return [
        f"sale {row['sale_id']}: user {row['user_id']} holds {row['units']} units in {row['purchases']} "
        f"purchases, above the cap of {row['limit']}"
        for row in over
    ]


def hold_violations() -> list[str]:
    """No purchase was confirmed after its hold expired (its units may have gone back meanwhile), and
    every purchase that is or was a hold has its expiresAt."""
    late = (
        Purchase.objects.filter(status=PurchaseStatus.CONFIRMED, confirmed_at__gt=F("expires_at"))
        .values_list("pk", "sale_id", "confirmed_at", "expires_at")
        .order_by("sale_id", "pk")
    )
    # Both times are set on these rows: the filter compares them.
    found = [
        f"purchase {pk} of sale {sale_id} was confirmed at {confirmed_at:%Y-%m-%dT%H:%M:%S.%f%z}, after its hold "
        f"expired at {expires_at:%Y-%m-%dT%H:%M:%S.%f%z}"
        for pk, sale_id, confirmed_at, expires_at in late
    ]
    unbounded = Purchase.objects.filter(
        status__in=[PurchaseStatus.HELD, PurchaseStatus.RELEASED, PurchaseStatus.EXPIRED], expires_at__isnull=True
    ).values_list("pk", "sale_id", "status")
    found += [f"purchase {pk} of sale {sale_id} is {status} but has no expiresAt" for pk, sale_id, status in unbounded]
    return found


def admission_violations() -> list[str]:
    """Every purchase of a waiting-room sale was made by a buyer whose place was admitted and whose
    admission still ran (created_at before the place's admitted_until), or is a waitlist offer (the
    line's continuation). A sale that got its waiting room after it sold reports its earlier buyers."""
    admitted = QueuePlace.objects.filter(
        sale_id=OuterRef("sale_id"), user_id=OuterRef("user_id"), admitted_until__gt=OuterRef("created_at")
    )
    offered = WaitlistEntry.objects.filter(purchase_id=OuterRef("pk"))
    unadmitted = (
        Purchase.objects.filter(sale__waiting_room=True)
        .exclude(Exists(admitted))
        .exclude(Exists(offered))
        .values_list("pk", "sale_id", "user_id", "created_at")
        .order_by("sale_id", "pk")
    )
    return [
        f"purchase {pk} of sale {sale_id} by user {user_id} at {created_at:%Y-%m-%dT%H:%M:%S.%f%z} was made "
        f"without a valid admission from the sale's waiting room"
        for pk, sale_id, user_id, created_at in unadmitted
    ]


def idempotency_violations() -> list[str]:
    """Every key that answered a purchase points at that purchase (its created_id), of the same user,
    as its body says."""
    found = []
    purchases = {
        row["pk"]: row
        for row in Purchase.objects.filter(pk__in=idempotency_selectors.created_ids_of_successes()).values(
            "pk", "user_id", "sale_id", "quantity"
        )
    }
    for record in idempotency_selectors.successes():
        label = f"idempotency key {record.pk} ({record.key!r} of user {record.user_id})"
        answered = record.data
        if answered is None:
            found.append(f"{label}: stored success body is not a purchase answer")
            continue
        if record.created_id is None:
            found.append(f"{label}: answered purchase {answered.get('purchaseId')} but points at no purchase")
            continue
        purchase = purchases.get(record.created_id)
        if purchase is None:
            found.append(f"{label}: points at purchase {record.created_id}, which does not exist")
            continue
        if purchase["user_id"] != record.user_id:
            found.append(f"{label}: points at purchase {record.created_id} of user {purchase['user_id']}")
        told = (answered.get("purchaseId"), answered.get("saleId"), answered.get("quantity"))
        stored = (purchase["pk"], purchase["sale_id"], purchase["quantity"])
        if told != stored:
            found.append(f"{label}: answered (purchaseId, saleId, quantity) = {told}, the purchase is {stored}")
    # A failure answer never has a purchase behind it.
    for record in idempotency_selectors.failures_pointing_at_a_row():
        found.append(
            f"idempotency key {record.pk} ({record.key!r}): answered {record.status_code} "
            f"but points at purchase {record.created_id}"
        )
    return found
