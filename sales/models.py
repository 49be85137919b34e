from datetime import datetime, timedelta
from typing import Self

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

# The longest hold a sale may give (a day): longer is not a hold but a reservation.
MAX_HOLD_SECONDS = 86_400
# A waiting room opens this long before its sale starts unless the sale names its own queueOpensAt.
QUEUE_OPENS_BEFORE = timedelta(minutes=15)
# The hardest join challenge a sale may ask for: its slowest solutions must still fit in a slow
# phone's challenge lifetime (docs/performance.md "Join challenge").
MAX_JOIN_DIFFICULTY = 100_000


class SaleStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ACTIVE = "active", "Active"
    COMPLETED = "completed", "Completed"


class FlashSaleQuerySet(models.QuerySet["FlashSale"]):
    def live(self, moment: datetime) -> Self:
        """Sales whose window contains `moment`, whatever their stock."""
        return self.filter(start_time__lte=moment, end_time__gt=moment)

    def active(self, moment: datetime) -> Self:
        """Sales a buyer can buy from at `moment`: live and not sold out."""
        return self.live(moment).filter(current_stock__gt=0)

    def pending(self, moment: datetime) -> Self:
        return self.filter(start_time__gt=moment)

    def completed(self, moment: datetime) -> Self:
        return self.filter(Q(end_time__lte=moment) | Q(start_time__lte=moment, current_stock=0))


class FlashSale(models.Model):
    """A limited stock offered during a time window.

    `current_stock` is only ever changed by conditional F() updates (see sales.purchase and
    sales.services). Two counters order changes: `version` grows on every staff edit of the sale's
    settings (and on ending it), so an edit made from a stale copy is refused, while purchases never
    make an edit stale; `stock_version` grows on every change of the stock (purchase, restock, stock
    edit), so live pushes of the stock are ordered.
    """

    name = models.CharField(max_length=200)
    start_time = models.DateTimeField(db_index=True)
    end_time = models.DateTimeField(db_index=True)
    original_stock = models.PositiveIntegerField(default=200)
    current_stock = models.PositiveIntegerField()
    version = models.PositiveBigIntegerField(default=1)
    # Defaults in the database too, for rows written by plain SQL (scripts, tests of a fresh clone).
    stock_version = models.PositiveBigIntegerField(default=1, db_default=1)
    # None: the setting in force (MAX_UNITS_PER_USER, MAX_PURCHASE_QUANTITY) applies, so changing a
    # setting changes every sale that did not choose its own limit.
    max_per_buyer = models.PositiveIntegerField(null=True, blank=True)
    max_per_purchase = models.PositiveIntegerField(null=True, blank=True)
    # While paused, purchases are refused (sale_paused); the status stays derived from clock and stock.
    paused = models.BooleanField(default=False, db_default=False)
    # 0: a purchase is final at once. Above 0: a purchase holds its units this long; the buyer (or the
    # shop's payment back end) confirms it or releases it, and the sale clock returns it when it expires.
    hold_seconds = models.PositiveIntegerField(default=0, db_default=0)
    # The waiting room (sales.queue): buyers take places from queue_opens_at (None: start_time minus
    # QUEUE_OPENS_BEFORE) and the sale clock admits them in order, admit_per_second a second, each
    # admission lasting admission_seconds.
    waiting_room = models.BooleanField(default=False, db_default=False)
    admit_per_second = models.PositiveIntegerField(default=20, db_default=20)
    admission_seconds = models.PositiveIntegerField(default=120, db_default=120)
    queue_opens_at = models.DateTimeField(null=True, blank=True)
    # When the sale clock drew the pre-queue's order (None: not yet); later places are numbered after it.
    queue_drawn_at = models.DateTimeField(null=True, blank=True)
    # Places up to this position are admitted (sales.queue.admit, the sale clock's step); the step
    # last advanced it at admitted_at. Staff may hold admission (admission_paused) while the sale runs.
    admitted_through = models.PositiveIntegerField(default=0, db_default=0)
    admitted_at = models.DateTimeField(null=True, blank=True)
    admission_paused = models.BooleanField(default=False, db_default=False)
    # 0: joining the waiting room takes no proof of work. Above 0: a join carries a solved challenge
    # (sales.join_challenge) that takes this many key derivations on average.
    join_difficulty = models.PositiveIntegerField(default=0, db_default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = FlashSaleQuerySet.as_manager()

    class Meta:
        ordering = ["start_time", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(current_stock__gte=0), name="sale_stock_not_negative"),
            models.CheckConstraint(
                condition=Q(current_stock__lte=F("original_stock")), name="sale_stock_within_original"
            ),
            models.CheckConstraint(condition=Q(end_time__gt=F("start_time")), name="sale_ends_after_start"),
            models.CheckConstraint(
                condition=Q(max_per_buyer__isnull=True) | Q(max_per_buyer__gte=1), name="sale_buyer_limit_positive"
            ),
            models.CheckConstraint(
                condition=Q(max_per_purchase__isnull=True) | Q(max_per_purchase__gte=1),
                name="sale_purchase_limit_positive",
            ),
            models.CheckConstraint(condition=Q(admit_per_second__gte=1), name="sale_admit_rate_positive"),
            models.CheckConstraint(condition=Q(admission_seconds__gte=30), name="sale_admission_at_least_30s"),
            models.CheckConstraint(
                condition=Q(join_difficulty__lte=MAX_JOIN_DIFFICULTY), name="sale_join_difficulty_bounded"
            ),
        ]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        if self.current_stock is None:
            self.current_stock = self.original_stock
        super().save(*args, **kwargs)

    def status_at(self, moment: datetime) -> str:
        if moment < self.start_time:
            return SaleStatus.PENDING
        if moment >= self.end_time or self.current_stock <= 0:
            return SaleStatus.COMPLETED
        return SaleStatus.ACTIVE

    @property
    def status(self) -> str:
        """Derived from the clock and the stock every time it is read, never stored."""
        return self.status_at(timezone.now())

    def is_live_at(self, moment: datetime) -> bool:
        return self.start_time <= moment < self.end_time

    @property
    def buyer_limit(self) -> int:
        """Most units one buyer may hold in this sale."""
        return self.max_per_buyer if self.max_per_buyer is not None else settings.MAX_UNITS_PER_USER

    @property
    def purchase_limit(self) -> int:
        """Most units one purchase of this sale may take (never above MAX_PURCHASE_QUANTITY, the
        ceiling every purchase body is parsed against)."""
        if self.max_per_purchase is None:
            return settings.MAX_PURCHASE_QUANTITY
        return min(self.max_per_purchase, settings.MAX_PURCHASE_QUANTITY)

    @property
    def queue_opening(self) -> datetime:
        """When the waiting room starts taking places."""
        if self.queue_opens_at is not None:
            return self.queue_opens_at
        return self.start_time - QUEUE_OPENS_BEFORE

    @property
    def units_sold(self) -> int:
        return self.original_stock - self.current_stock


class PurchaseStatus(models.TextChoices):
    """`held` and `confirmed` keep their units out of the stock; `released` and `expired` gave them back."""

    CONFIRMED = "confirmed", "Confirmed"
    HELD = "held", "Held"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Expired"


# The statuses whose units are out of the sale's stock: original - current == their quantities.
TAKING_STATUSES = (PurchaseStatus.HELD, PurchaseStatus.CONFIRMED)


class Purchase(models.Model):
    """One successful purchase, inserted in the transaction that took the stock.

    A purchase of a sale with holds starts `held` until `expires_at`; after that only its status and
    the time it left `held` change, each by one conditional UPDATE that only a held row matches
    (sales.holds), so a hold is confirmed, released or expired exactly once.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="purchases")
    sale = models.ForeignKey(FlashSale, on_delete=models.PROTECT, related_name="purchases")
    quantity = models.PositiveIntegerField()
    # Taken by the ORM at insert, after the stock row lock is held, so purchases of one sale get
    # timestamps in the order they took stock (microsecond precision on every backend).
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(
        max_length=9, choices=PurchaseStatus.choices, default=PurchaseStatus.CONFIRMED, db_default="confirmed"
    )
    # Set for a hold only: the database's clock at the purchase plus the sale's hold_seconds.
    expires_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # When a hold was released by its buyer or expired (returned by the sale clock).
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="purchase_quantity_positive"),
            models.CheckConstraint(
                condition=Q(status__in=["confirmed", "held", "released", "expired"]), name="purchase_status_known"
            ),
            models.CheckConstraint(
                condition=~Q(status="held") | Q(expires_at__isnull=False), name="purchase_hold_expires"
            ),
        ]
        indexes = [
            models.Index(fields=["created_at", "id"], name="purchase_chrono_idx"),
            models.Index(fields=["sale", "created_at", "id"], name="purchase_sale_chrono_idx"),
            models.Index(fields=["sale", "user"], name="purchase_sale_user_idx"),
            # The sale clock's search for expired holds reads only the (few) held rows.
            models.Index(fields=["expires_at"], name="purchase_held_expiry_idx", condition=Q(status="held")),
            models.Index(fields=["user", "created_at", "id"], name="purchase_user_chrono_idx"),
        ]

    def __str__(self):
        return f"{self.quantity} x {self.sale_id} for {self.user_id}"


class WaitlistState(models.TextChoices):
    WAITING = "waiting", "Waiting"
    # Given a hold in their name (`purchase`) by the sale clock.
    OFFERED = "offered", "Offered"
    # Passed over: the offer would have taken them above the sale's maxPerBuyer.
    SKIPPED = "skipped", "Skipped"


class WaitlistEntry(models.Model):
    """A buyer's place in a sale's waitlist; places are served in id order (the order they were taken)."""

    sale = models.ForeignKey(FlashSale, on_delete=models.CASCADE, related_name="waitlist")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="waitlist_places")
    state = models.CharField(max_length=7, choices=WaitlistState.choices, default=WaitlistState.WAITING)
    created_at = models.DateTimeField(default=timezone.now)
    served_at = models.DateTimeField(null=True, blank=True)
    purchase = models.OneToOneField(Purchase, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["sale", "id"]
        constraints = [
            # One place per buyer and sale: taking it again answers the place already held.
            models.UniqueConstraint(fields=["sale", "user"], name="waitlist_one_place_per_buyer"),
        ]
        indexes = [
            models.Index(fields=["sale", "id"], name="waitlist_waiting_idx", condition=Q(state="waiting")),
        ]

    def __str__(self):
        return f"{self.user_id} waiting for {self.sale_id}"


class QueuePlace(models.Model):
    """A buyer's place in a sale's waiting room: one INSERT per join, never a row every join updates.

    `position` is given by the sale clock (sales.queue.number_places): the places taken before the
    start in a uniform shuffle drawn at the start, later ones in the order their inserts became
    visible to it (their commit order). `pre_queue` records which of the two a place was.
    """

    sale = models.ForeignKey(FlashSale, on_delete=models.CASCADE, related_name="queue_places")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="queue_places")
    joined_at = models.DateTimeField(default=timezone.now)
    pre_queue = models.BooleanField(default=False)
    position = models.PositiveIntegerField(null=True, blank=True)
    numbered_at = models.DateTimeField(null=True, blank=True)
    # Set by the admission step that reached this place: the buyer may buy until then.
    admitted_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["sale", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["sale", "user"], name="queue_one_place_per_buyer"),
            models.UniqueConstraint(fields=["sale", "position"], name="queue_positions_unique"),
        ]
        indexes = [
            # The clock's search for places still to number reads only those.
            models.Index(fields=["sale", "id"], name="queue_unnumbered_idx", condition=Q(position__isnull=True)),
            # The admission step counts the admissions still running (admitted_until in the future):
            # a range of this index, however many places wait or were admitted long ago.
            models.Index(
                fields=["sale", "admitted_until"],
                name="queue_admission_idx",
                condition=Q(admitted_until__isnull=False),
            ),
        ]

    def __str__(self):
        return f"{self.user_id} in line for {self.sale_id}"
