from collections.abc import Mapping

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.ids import MAX_ID
from sales.exceptions import InvalidSaleChange
from sales.models import MAX_HOLD_SECONDS, MAX_JOIN_DIFFICULTY, FlashSale, PurchaseStatus, WaitlistState
from sales.purchase import InvalidOrder, parse_order
from sales.queue import QueueStatus
from sales.services import MAX_STOCK, check_window

# A waiting room admits at most this many buyers a second (far above what one sale's row can sell).
MAX_ADMIT_PER_SECOND = 100_000


class StrictIntegerField(serializers.IntegerField):
    """An integer that must arrive as a JSON integer: no "5", no 5.0, no true."""

    default_error_messages = {"invalid": "A JSON integer is required."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A boolean that must arrive as JSON true or false: no "true", no 1."""

    default_error_messages = {"invalid": "A JSON boolean is required."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class PurchaseRequestSerializer(serializers.Serializer):
    """The fields document the body in the schema; sales.purchase.parse_order validates it (the same
    parser the fast path uses, so the two cannot disagree on what is valid)."""

    saleId = StrictIntegerField(min_value=1, max_value=MAX_ID)

    def get_fields(self):
        fields = super().get_fields()
        # Built per request so the limit follows the settings in force.
        fields["quantity"] = StrictIntegerField(min_value=1, max_value=settings.MAX_PURCHASE_QUANTITY)
        return fields

    def to_internal_value(self, data):
        try:
            order = parse_order(data)
        except InvalidOrder as invalid:
            raise serializers.ValidationError(invalid.errors) from None
        return {"saleId": order.sale_id, "quantity": order.quantity}


def _limit_field(source: str, maximum: int, **kwargs) -> StrictIntegerField:
    # null (or left out on create): the setting in force applies.
    return StrictIntegerField(source=source, min_value=1, max_value=maximum, allow_null=True, **kwargs)


class FlashSaleSerializer(serializers.ModelSerializer):
    saleId = serializers.IntegerField(source="pk", read_only=True)
    startTime = serializers.DateTimeField(source="start_time")
    endTime = serializers.DateTimeField(source="end_time")
    originalStock = StrictIntegerField(source="original_stock", min_value=1, max_value=MAX_STOCK, default=200)
    currentStock = serializers.IntegerField(source="current_stock", read_only=True)
    status = serializers.CharField(read_only=True)
    version = serializers.IntegerField(read_only=True, help_text="Counts staff edits of the sale's settings.")
    stockVersion = serializers.IntegerField(
        source="stock_version", read_only=True, help_text="Counts changes of the stock (purchases, restocks, edits)."
    )
    paused = serializers.BooleanField(read_only=True)
    maxPerBuyer = _limit_field("max_per_buyer", 10_000_000, required=False)
    maxPerPurchase = _limit_field("max_per_purchase", 10_000_000, required=False)  # see get_fields
    holdSeconds = StrictIntegerField(
        source="hold_seconds",
        min_value=0,
        max_value=MAX_HOLD_SECONDS,
        default=0,
        help_text="0: a purchase is final at once. Above 0: a purchase is held this long, to be confirmed or released.",
    )
    waitingRoom = StrictBooleanField(
        source="waiting_room",
        required=False,
        default=False,
        help_text="Buyers take places in a waiting room (POST .../queue) and buy once admitted.",
    )
    admitPerSecond = StrictIntegerField(
        source="admit_per_second", min_value=1, max_value=MAX_ADMIT_PER_SECOND, required=False, default=20
    )
    admissionSeconds = StrictIntegerField(
        source="admission_seconds",
        min_value=30,
        max_value=MAX_HOLD_SECONDS,
        required=False,
        default=120,
        help_text="How long an admitted buyer may buy.",
    )
    queueOpensAt = serializers.DateTimeField(
        source="queue_opens_at",
        allow_null=True,
        required=False,
        help_text="When the waiting room takes places; answers give the time in force (null: startTime - 15 min).",
    )
    admissionPaused = StrictBooleanField(
        source="admission_paused",
        required=False,
        default=False,
        help_text="Staff hold the waiting room's admission: no one more is let through until it is false again.",
    )
    admittedThrough = serializers.IntegerField(
        source="admitted_through", read_only=True, help_text="Places up to this position have been admitted."
    )
    joinDifficulty = StrictIntegerField(
        source="join_difficulty",
        min_value=0,
        max_value=MAX_JOIN_DIFFICULTY,
        required=False,
        default=0,
        help_text="0: joining the waiting room takes no proof of work. Above 0: a join carries a solved "
        "challenge (GET .../queue/challenge) that takes this many key derivations on average.",
    )

    class Meta:
        model = FlashSale
        fields = [
            "saleId",
            "name",
            "startTime",
            "endTime",
            "originalStock",
            "currentStock",
            "status",
            "version",
            "stockVersion",
            "paused",
            "maxPerBuyer",
            "maxPerPurchase",
            "holdSeconds",
            "waitingRoom",
            "admitPerSecond",
            "admissionSeconds",
            "queueOpensAt",
            "admissionPaused",
            "admittedThrough",
            "joinDifficulty",
        ]

    def get_fields(self):
        fields = super().get_fields()
        # Built per request so the ceiling follows the settings in force. Answers give the limit in
        # force (see to_representation), never null.
        fields["maxPerPurchase"] = _limit_field("max_per_purchase", settings.MAX_PURCHASE_QUANTITY, required=False)
        return fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["maxPerBuyer"], data["maxPerPurchase"] = instance.buyer_limit, instance.purchase_limit
        data["queueOpensAt"] = serializers.DateTimeField().to_representation(instance.queue_opening)
        return data

    def validate(self, attrs):
        start = attrs.get("start_time", getattr(self.instance, "start_time", None))
        end = attrs.get("end_time", getattr(self.instance, "end_time", None))
        if start and end:
            try:
                check_window(start, end)
            except InvalidSaleChange as refused:
                raise serializers.ValidationError(refused.details) from None
        return attrs


class FlashSaleUpdateSerializer(serializers.Serializer):
    """An edit names the version it was made from (optimistic concurrency); other fields are optional."""

    version = StrictIntegerField(min_value=1)
    name = serializers.CharField(max_length=200, required=False)
    startTime = serializers.DateTimeField(source="start_time", required=False)
    endTime = serializers.DateTimeField(source="end_time", required=False)
    originalStock = StrictIntegerField(source="original_stock", min_value=1, max_value=MAX_STOCK, required=False)
    holdSeconds = StrictIntegerField(source="hold_seconds", min_value=0, max_value=MAX_HOLD_SECONDS, required=False)
    waitingRoom = StrictBooleanField(source="waiting_room", required=False)
    admitPerSecond = StrictIntegerField(
        source="admit_per_second", min_value=1, max_value=MAX_ADMIT_PER_SECOND, required=False
    )
    admissionSeconds = StrictIntegerField(
        source="admission_seconds", min_value=30, max_value=MAX_HOLD_SECONDS, required=False
    )
    queueOpensAt = serializers.DateTimeField(source="queue_opens_at", allow_null=True, required=False)
    admissionPaused = StrictBooleanField(source="admission_paused", required=False)
    joinDifficulty = StrictIntegerField(
        source="join_difficulty", min_value=0, max_value=MAX_JOIN_DIFFICULTY, required=False
    )
    startNow = StrictBooleanField(
        source="start_now",
        required=False,
        default=False,
        help_text="Start a pending sale now (its start becomes the server's clock). A past startTime is "
        "refused without it, so one mistyped date cannot launch a sale.",
    )

    def to_internal_value(self, data):
        # A field the edit cannot change is refused, not ignored: the caller would believe it saved.
        unexpected = {}
        if isinstance(data, Mapping):
            read_only = {name for name, field in FlashSaleSerializer().fields.items() if field.read_only}
            unexpected = {
                # The message names the key as sent: `details` keys are camelCased (`current_stock`
                # would read as the read-only `currentStock`).
                key: ["This field is read-only." if key in read_only else f"Unknown field “{key}”."]
                for key in data
                if key not in self.fields
            }
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as invalid:
            if unexpected and isinstance(invalid.detail, dict):
                raise serializers.ValidationError({**invalid.detail, **unexpected}) from None
            raise
        if unexpected:
            raise serializers.ValidationError(unexpected)
        return value

    def get_fields(self):
        fields = super().get_fields()
        # null: back to the setting in force.
        fields["maxPerBuyer"] = _limit_field("max_per_buyer", 10_000_000, required=False)
        fields["maxPerPurchase"] = _limit_field("max_per_purchase", settings.MAX_PURCHASE_QUANTITY, required=False)
        return fields


class AddUnitsSerializer(serializers.Serializer):
    units = StrictIntegerField(min_value=1, max_value=MAX_STOCK)


class PurchaseSerializer(serializers.Serializer):
    """A purchase as its buyer sees it: confirm, release and the buyer's list of purchases answer with it."""

    purchaseId = serializers.IntegerField(source="pk")
    saleId = serializers.IntegerField(source="sale_id")
    quantity = serializers.IntegerField(min_value=1)
    status = serializers.ChoiceField(
        choices=PurchaseStatus.choices,
        help_text="held: reserved until expiresAt. confirmed: final. released, expired: the units went back.",
    )
    timestamp = serializers.DateTimeField(source="created_at")
    expiresAt = serializers.DateTimeField(source="expires_at", allow_null=True)
    confirmedAt = serializers.DateTimeField(source="confirmed_at", allow_null=True)
    releasedAt = serializers.DateTimeField(
        source="released_at", allow_null=True, help_text="When the hold was released or expired."
    )


class WaitlistPlaceSerializer(serializers.Serializer):
    """A buyer's place in a sale's waitlist, rendered from sales.waitlist.Place."""

    saleId = serializers.IntegerField(source="entry.sale_id")
    state = serializers.ChoiceField(
        source="entry.state",
        choices=WaitlistState.choices,
        help_text="waiting; offered: the clock gave you a hold (purchaseId) to confirm; skipped: you hold your limit.",
    )
    position = serializers.IntegerField(
        allow_null=True, help_text="Places still waiting up to yours (1: next); null once served."
    )
    joinedAt = serializers.DateTimeField(source="entry.created_at")
    purchaseId = serializers.IntegerField(source="entry.purchase_id", allow_null=True)


class QueuePlaceSerializer(serializers.Serializer):
    """A buyer's place in a sale's waiting room, rendered from sales.queue.PlaceView."""

    saleId = serializers.IntegerField(source="sale_id")
    status = serializers.ChoiceField(
        choices=QueueStatus.ALL,
        help_text="waiting; admitted: buy before admittedUntil; expired: the admission ran out; "
        "closed: the sale sold out or ended.",
    )
    position = serializers.IntegerField(
        allow_null=True, help_text="Your place in the line (1: first); null while the pre-queue waits for its draw."
    )
    aheadOfYou = serializers.IntegerField(source="ahead_of_you", allow_null=True)
    estimatedWaitSeconds = serializers.IntegerField(source="estimated_wait_seconds", allow_null=True)
    admittedUntil = serializers.DateTimeField(source="admitted_until", allow_null=True)


class JoinChallengeParametersSerializer(serializers.Serializer):
    """ALTCHA v2's challenge parameters (documentation only: the challenge travels verbatim)."""

    algorithm = serializers.CharField(help_text="PBKDF2/SHA-256.")
    nonce = serializers.CharField(help_text="Hex; the start of each try's password, the counter follows it.")
    salt = serializers.CharField(help_text="Hex; the PBKDF2 salt.")
    cost = serializers.IntegerField(help_text="PBKDF2 iterations of one try.")
    keyLength = serializers.IntegerField(help_text="Bytes of each try's derived key.")
    keyPrefix = serializers.CharField(help_text="Hex the solution's derived key starts with.")
    keySignature = serializers.CharField()
    expiresAt = serializers.IntegerField(help_text="Unix seconds.")

    def get_fields(self):
        fields = super().get_fields()
        # Declared here: as a class attribute it would hide Serializer.data.
        fields["data"] = serializers.DictField(help_text="{saleId, userId}: the one join this challenge is for.")
        return fields


class JoinChallengeBodySerializer(serializers.Serializer):
    parameters = JoinChallengeParametersSerializer()
    signature = serializers.CharField()


class JoinSolutionSerializer(serializers.Serializer):
    counter = serializers.IntegerField(
        min_value=0, help_text="The try whose derived key starts with keyPrefix (a big-endian uint32 after the nonce)."
    )
    derivedKey = serializers.CharField(help_text="That try's derived key, hex.")


@extend_schema_field(JoinChallengeBodySerializer)
class JoinChallengeField(serializers.JSONField):
    """Rendered and read verbatim: its signature covers its exact content."""


@extend_schema_field(JoinSolutionSerializer)
class JoinSolutionField(serializers.JSONField):
    """Read as sent: sales.join_challenge judges its shape along with its value."""


class JoinChallengeSerializer(serializers.Serializer):
    """A challenge to solve before joining, rendered from sales.join_challenge.IssuedChallenge."""

    saleId = serializers.IntegerField(source="sale_id")
    difficulty = serializers.IntegerField(
        help_text="The sale's joinDifficulty: key derivations a solution takes on average (0: none needed)."
    )
    expiresAt = serializers.DateTimeField(
        source="expires_at", allow_null=True, help_text="The solution must reach the server before this."
    )
    challenge = JoinChallengeField(
        allow_null=True,
        help_text="ALTCHA's challenge (v2), to send back unchanged with its solution; null at difficulty 0.",
    )


class JoinQueueRequestSerializer(serializers.Serializer):
    """The body of a join: empty for a sale without a join difficulty."""

    challenge = JoinChallengeField(required=False, allow_null=True, help_text="As GET .../queue/challenge gave it.")
    solution = JoinSolutionField(required=False, allow_null=True)


class PurchaseResultSerializer(serializers.Serializer):
    """`data` of a successful purchase, rendered from sales.purchase.PurchaseResult (the same
    serializer documents it in the OpenAPI schema, so the two cannot drift)."""

    purchaseId = serializers.IntegerField(source="purchase_id")
    saleId = serializers.IntegerField(source="sale_id")
    quantity = serializers.IntegerField(min_value=1)
    remainingStock = serializers.IntegerField(source="remaining_stock", min_value=0)
    timestamp = serializers.DateTimeField()
    status = serializers.ChoiceField(
        choices=[PurchaseStatus.CONFIRMED, PurchaseStatus.HELD],
        help_text="confirmed: final. held: the units are reserved until expiresAt; confirm or release the purchase.",
    )
    expiresAt = serializers.DateTimeField(
        source="expires_at", allow_null=True, help_text="When a held purchase's units go back to the sale; else null."
    )
