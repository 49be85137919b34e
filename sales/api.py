from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.views import APIView

from core.error_codes import ErrorCode
from core.pagination import PageQuerySerializer, paginate
from core.ratelimit import rate_limit
from core.responses import SuccessResponse, success
from core.schema import BODY, STAFF, TOKEN, errors, ok, page_of
from idempotency.decorators import idempotent
from idempotency.exceptions import IdempotencyKeyInUse, IdempotencyKeyLimitReached, IdempotencyKeyReused
from sales import history, holds, metrics, purchase, queue, selectors, services, waitlist
from sales.exceptions import (
    AdmissionExpired,
    ChallengeFailed,
    HoldConfirmed,
    HoldExpired,
    HoldReleased,
    InsufficientStock,
    InvalidSaleChange,
    NoActiveSale,
    NotAdmitted,
    NotInQueue,
    NoWaitingRoom,
    PurchaseNotFound,
    QueueNotOpen,
    SaleNotActive,
    SaleNotFound,
    SalePaused,
    SoldOut,
    UserLimitReached,
    VersionConflict,
)
from sales.models import FlashSale
from sales.serializers import (
    AddUnitsSerializer,
    FlashSaleSerializer,
    FlashSaleUpdateSerializer,
    JoinChallengeSerializer,
    JoinQueueRequestSerializer,
    PurchaseRequestSerializer,
    PurchaseResultSerializer,
    PurchaseSerializer,
    QueuePlaceSerializer,
    WaitlistPlaceSerializer,
)


class ActiveSaleView(APIView):
    @extend_schema(
        tags=["flashsales"],
        summary="The sale buyers can buy from now (the one ending first when several are live)",
        responses={**ok(200, "ActiveSaleResponse", FlashSaleSerializer), **errors(TOKEN, NoActiveSale)},
    )
    def get(self, request):
        sale = selectors.active_sale()
        return success(FlashSaleSerializer(sale).data, "Active flash sale")


class PurchaseView(APIView):
    @extend_schema(
        tags=["flashsales"],
        summary="Buy units of a live sale",
        description=(
            "Send an `Idempotency-Key` to make retries safe: the same user with the same key and body gets "
            "the first completed attempt's status and body again, with `Idempotent-Replayed: true`, and never "
            "a second purchase. Keys expire after 24 h. Validation, auth and rate-limit refusals are not stored."
        ),
        request=PurchaseRequestSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="1 to 255 printable ASCII characters, unique per attempt (e.g. a UUID).",
                pattern=r"^[!-~]([ -~]{0,253}[!-~])?$",
            ),
            OpenApiParameter(
                "Idempotent-Replayed",
                str,
                OpenApiParameter.HEADER,
                enum=["true"],
                description="Present when the answer is the stored result of an earlier request with this key.",
                response=[201, 404, 409, 422],
            ),
        ],
        responses={
            **ok(201, "PurchaseResponse", PurchaseResultSerializer),
            **errors(
                BODY,
                TOKEN,
                SaleNotFound,
                SaleNotActive,
                SalePaused,
                SoldOut,
                InsufficientStock,
                UserLimitReached,
                NotAdmitted,
                AdmissionExpired,
                IdempotencyKeyInUse,
                IdempotencyKeyReused,
                IdempotencyKeyLimitReached,
                ErrorCode.RATE_LIMITED,
            ),
        },
    )
    @rate_limit(group="purchase", key="user", rate_setting="RATELIMIT_PURCHASE")
    @idempotent(scope="purchase")
    def post(self, request):
        form = PurchaseRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        result = purchase.purchase(
            user=request.user, sale_id=form.validated_data["saleId"], quantity=form.validated_data["quantity"]
        )
        return purchase_created(result)

    def finalize_response(self, request, response, *args, **kwargs):
        # Every answer of the full path passes here, refusals included (DRF's handler built them).
        response = super().finalize_response(request, response, *args, **kwargs)
        metrics.count_purchase(response)
        return response


# One serializer renders every purchase's result. Rendering only reads its fields; a serializer per
# request built them again (a deep copy of the declared fields), a large share of a purchase's Python
# (docs/performance.md "Python a purchase runs").
_RESULT = PurchaseResultSerializer()


def purchase_created(result: purchase.PurchaseResult) -> SuccessResponse:
    """The answer to a purchase that committed: the view's, and the one the fast path renders
    (sales.fastpath) from the same data."""
    return success(_RESULT.to_representation(result), "Purchase successful", status=201, created_id=result.purchase_id)


_PLACE = QueuePlaceSerializer()  # built once, as _RESULT


def queue_place_answer(place: queue.PlaceView, *, joining: bool) -> SuccessResponse:
    """The answer to a join (`joining`) or a read of a place: the view's, and the one the fast path
    renders (sales.queue_fastpath) from the same place."""
    data = _PLACE.to_representation(place)
    if not joining:
        return success(data, "Your place")
    if place.created:
        return success(data, "You joined the line", status=201)
    return success(data, "You are in the line")


_IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="1 to 255 printable ASCII characters, unique per attempt (e.g. a UUID).",
    pattern=r"^[!-~]([ -~]{0,253}[!-~])?$",
)
_PURCHASE_ID = OpenApiParameter("purchase_id", int, OpenApiParameter.PATH, description="The purchase's purchaseId.")
_HOLD_ERRORS = (
    TOKEN,
    # An Idempotency-Key that is not 1 to 255 printable ASCII characters.
    ErrorCode.VALIDATION_ERROR,
    ErrorCode.NOT_FOUND,
    PurchaseNotFound,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    IdempotencyKeyLimitReached,
)


class PurchaseListView(APIView):
    @extend_schema(
        tags=["purchases"],
        summary="The caller's purchases with their status, newest first",
        parameters=[PageQuerySerializer],
        responses={
            **ok(200, "PurchaseListResponse", page_of("PurchasePage", "purchases", PurchaseSerializer), paginated=True),
            **errors(TOKEN, ErrorCode.VALIDATION_ERROR),
        },
    )
    def get(self, request):
        query = PageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page, limit = query.validated_data["page"], query.validated_data["limit"]
        count, purchases = paginate(selectors.purchases_of(request.user), page=page, limit=limit)
        return success(
            {"purchases": PurchaseSerializer(purchases, many=True).data},
            "Your purchases",
            count=count,
            page=page,
            limit=limit,
        )


class PurchaseConfirmView(APIView):
    @extend_schema(
        tags=["purchases"],
        summary="Confirm a held purchase (its buyer, or staff for a shop's payment back end)",
        description=(
            "Makes a held purchase final while its hold has not expired; a confirmed purchase answers the "
            "same again. After `expiresAt`: 409 `hold_expired` and nothing changes. `Idempotency-Key` works "
            "as for a purchase."
        ),
        request=None,
        parameters=[_PURCHASE_ID, _IDEMPOTENCY_KEY],
        responses={
            **ok(200, "PurchaseConfirmResponse", PurchaseSerializer),
            **errors(*_HOLD_ERRORS, HoldExpired, HoldReleased, ErrorCode.RATE_LIMITED),
        },
    )
    @rate_limit(group="purchase", key="user", rate_setting="RATELIMIT_PURCHASE")
    @idempotent(scope="confirm")
    def post(self, request, purchase_id):
        order = holds.confirm(user=request.user, purchase_id=int(purchase_id))
        return success(PurchaseSerializer(order).data, "Purchase confirmed", created_id=order.pk)


class PurchaseReleaseView(APIView):
    @extend_schema(
        tags=["purchases"],
        summary="Release a held purchase: its units go back to the sale at once (its buyer, or staff)",
        description=(
            "A released purchase answers the same again and returns nothing twice. A confirmed purchase is "
            "final (409 `hold_confirmed`); an expired hold's units are already back (409 `hold_expired`)."
        ),
        request=None,
        parameters=[_PURCHASE_ID, _IDEMPOTENCY_KEY],
        responses={
            **ok(200, "PurchaseReleaseResponse", PurchaseSerializer),
            **errors(*_HOLD_ERRORS, HoldExpired, HoldConfirmed, ErrorCode.RATE_LIMITED),
        },
    )
    @rate_limit(group="purchase", key="user", rate_setting="RATELIMIT_PURCHASE")
    @idempotent(scope="release")
    def post(self, request, purchase_id):
        order = holds.release(user=request.user, purchase_id=int(purchase_id))
        return success(PurchaseSerializer(order).data, "Purchase released", created_id=order.pk)


_SALE_ERRORS = (SaleNotFound, InvalidSaleChange)
_EDIT_DESCRIPTION = (
    "Send the `version` the edit was made from. A field the edit cannot change (`currentStock`, `status`, "
    "`saleId`, or any unknown name) is 400 `validation_error` naming it in `details`. An edit that changes "
    "nothing writes nothing and answers 200 with the sale and its version unchanged. A pending sale's "
    "`startTime` cannot move into the past (400 `validation_error`, `details.startTime`): send "
    "`startNow: true` instead to start it at the server's clock. A started sale keeps its start, except "
    "that one with no purchase yet may move it to the future (pending again)."
)


@extend_schema_view(
    list=extend_schema(
        summary="All sales, by start time",
        parameters=[PageQuerySerializer],
        responses={
            **ok(200, "FlashSaleListResponse", page_of("FlashSalePage", "sales", FlashSaleSerializer), paginated=True),
            **errors(TOKEN, ErrorCode.VALIDATION_ERROR),
        },
    ),
    retrieve=extend_schema(
        summary="One sale",
        responses={**ok(200, "FlashSaleResponse", FlashSaleSerializer), **errors(TOKEN, SaleNotFound)},
    ),
    create=extend_schema(
        summary="Create a sale (staff)",
        request=FlashSaleSerializer,
        responses={**ok(201, "FlashSaleResponse", FlashSaleSerializer), **errors(BODY, STAFF, InvalidSaleChange)},
    ),
    update=extend_schema(
        summary="Edit a sale from the version it was read at (staff)",
        description=_EDIT_DESCRIPTION,
        request=FlashSaleUpdateSerializer,
        responses={
            **ok(200, "FlashSaleResponse", FlashSaleSerializer),
            **errors(BODY, STAFF, *_SALE_ERRORS, VersionConflict),
        },
    ),
    partial_update=extend_schema(
        summary="Edit a sale from the version it was read at (staff)",
        description=_EDIT_DESCRIPTION,
        request=FlashSaleUpdateSerializer,
        responses={
            **ok(200, "FlashSaleResponse", FlashSaleSerializer),
            **errors(BODY, STAFF, *_SALE_ERRORS, VersionConflict),
        },
    ),
    add_units=extend_schema(
        summary="Restock: original and current stock grow together (staff)",
        description="Stock is capped at 10,000,000 units: `units` that would take `originalStock` past it "
        "are 400 `validation_error` (`details.units` says how many more fit), and nothing changes.",
        request=AddUnitsSerializer,
        responses={**ok(200, "FlashSaleResponse", FlashSaleSerializer), **errors(BODY, STAFF, *_SALE_ERRORS)},
    ),
    end=extend_schema(
        summary="End a live sale now (staff)",
        request=None,
        responses={**ok(200, "FlashSaleResponse", FlashSaleSerializer), **errors(STAFF, SaleNotFound, SaleNotActive)},
    ),
    pause=extend_schema(
        summary="Pause a sale that has not ended: purchases are refused with sale_paused until it resumes (staff)",
        request=None,
        responses={**ok(200, "FlashSaleResponse", FlashSaleSerializer), **errors(STAFF, SaleNotFound, SaleNotActive)},
    ),
    waitlist=extend_schema(
        summary="Take a place in the sale's waitlist (201; 200 with the place already held)",
        description=(
            "Units that come back to a sale with holds (expired or released holds, restocks) are offered by "
            "the sale clock in waitlist order: the next waiting buyer gets a hold of one unit in their name "
            "(within maxPerBuyer), told over the sale's WebSocket as an `offer`, to confirm within holdSeconds."
        ),
        request=None,
        responses={
            **ok(201, "WaitlistPlaceResponse", WaitlistPlaceSerializer),
            **ok(200, "WaitlistPlaceResponse", WaitlistPlaceSerializer),
            **errors(TOKEN, SaleNotFound, SaleNotActive),
        },
    ),
    resume=extend_schema(
        summary="Resume a paused sale (staff)",
        request=None,
        responses={**ok(200, "FlashSaleResponse", FlashSaleSerializer), **errors(STAFF, SaleNotFound)},
    ),
)
@extend_schema(tags=["flashsales"])
class FlashSaleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Sales: anyone signed in reads them; staff create and edit them."""

    queryset = FlashSale.objects.order_by("start_time", "id")
    serializer_class = FlashSaleSerializer
    lookup_value_regex = r"[0-9]+"

    def get_permissions(self):
        if self.action in {"list", "retrieve", "waitlist", "join_queue", "queue_place", "join_challenge"}:
            return [IsAuthenticated()]
        return [IsAdminUser()]

    def get_object(self):
        return selectors.get_sale(int(self.kwargs["pk"]))

    def list(self, request):
        query = PageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page, limit = query.validated_data["page"], query.validated_data["limit"]
        count, sales = paginate(self.get_queryset(), page=page, limit=limit)
        return success(
            {"sales": FlashSaleSerializer(sales, many=True).data},
            "Flash sales",
            count=count,
            page=page,
            limit=limit,
        )

    def retrieve(self, request, pk=None):
        return success(FlashSaleSerializer(self.get_object()).data, "Flash sale")

    def create(self, request):
        form = FlashSaleSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        sale = services.create_sale(**form.validated_data)
        history.record(
            user=request.user, sale=sale, message=history.THROUGH_API + history.describe_sale(sale), added=True
        )
        return success(FlashSaleSerializer(sale).data, "Flash sale created", status=201)

    def update(self, request, pk=None, partial=False):
        form = FlashSaleUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        changes = dict(form.validated_data)
        version = changes.pop("version")
        start_now = changes.pop("start_now")
        before = selectors.get_sale(int(pk))
        sale = services.update_sale(sale_id=int(pk), expected_version=version, changes=changes, start_now=start_now)
        changed = history.describe_changes(before, sale)
        if not changed:
            # Nothing was written: the same version comes back.
            return success(FlashSaleSerializer(sale).data, "Nothing to change")
        history.record(user=request.user, sale=sale, message=history.THROUGH_API + changed)
        return success(FlashSaleSerializer(sale).data, "Flash sale updated")

    @action(detail=True, methods=["post"], url_path="add-units")
    def add_units(self, request, pk=None):
        form = AddUnitsSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        units = form.validated_data["units"]
        sale = services.add_units(sale_id=int(pk), units=units)
        history.record(
            user=request.user,
            sale=sale,
            message=f"{history.THROUGH_API}Added {units} units: original stock "
            f"{sale.original_stock - units} → {sale.original_stock}.",
        )
        return success(FlashSaleSerializer(sale).data, "Units added")

    @action(detail=True, methods=["post"], url_path="end")
    def end(self, request, pk=None):
        sale = services.end_sale_now(sale_id=int(pk))
        history.record(user=request.user, sale=sale, message=f"{history.THROUGH_API}Ended the sale now.")
        return success(FlashSaleSerializer(sale).data, "Flash sale ended")

    @action(detail=True, methods=["post"], url_path="pause")
    def pause(self, request, pk=None):
        sale = services.pause_sale(sale_id=int(pk))
        return success(FlashSaleSerializer(sale).data, "Flash sale paused")

    @action(detail=True, methods=["post"], url_path="waitlist")
    def waitlist(self, request, pk=None):
        place = waitlist.join(user=request.user, sale_id=int(pk))
        if place.created:
            return success(WaitlistPlaceSerializer(place).data, "You joined the waitlist", status=201)
        return success(WaitlistPlaceSerializer(place).data, "You are on the waitlist")

    @extend_schema(
        summary="Take a place in the sale's waiting room (201; 200 with the place already held)",
        description=(
            "A sale with `waitingRoom` takes places from `queueOpensAt`. Places taken before `startTime` "
            "form a pre-queue (`position` null) whose order the sale clock draws at random at the start; "
            "later places have their position in the answer, in the order the database recorded the joins. "
            "Joins count against the purchase "
            "rate limit per user, RATELIMIT_QUEUE_JOIN_IP per address and the global one per address. "
            "A sale with `joinDifficulty` > 0 takes a place only with `{challenge, solution}`: a challenge "
            "from GET .../queue/challenge, solved, each used once (400 `challenge_failed`, `details.reason`: "
            "missing, invalid, expired, used or not_yours). A buyer already in line needs none: the answer "
            "is their place."
        ),
        request=JoinQueueRequestSerializer,
        responses={
            **ok(201, "QueuePlaceResponse", QueuePlaceSerializer),
            **ok(200, "QueuePlaceResponse", QueuePlaceSerializer),
            **errors(
                TOKEN,
                ChallengeFailed,
                SaleNotFound,
                NoWaitingRoom,
                QueueNotOpen,
                SoldOut,
                SaleNotActive,
                ErrorCode.RATE_LIMITED,
            ),
        },
    )
    @action(detail=True, methods=["post"], url_path="queue")
    @rate_limit(group="queue", key="user", rate_setting="RATELIMIT_PURCHASE")
    @rate_limit(group="queue_ip", key="ip", rate_setting="RATELIMIT_QUEUE_JOIN_IP")
    def join_queue(self, request, pk=None):
        form = JoinQueueRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        place = queue.join(
            user=request.user,
            sale_id=int(pk),
            challenge=form.validated_data.get("challenge"),
            solution=form.validated_data.get("solution"),
        )
        return queue_place_answer(place, joining=True)

    @extend_schema(
        summary="A challenge to solve before joining the sale's waiting room",
        description=(
            "For a sale with `joinDifficulty` > 0: an ALTCHA challenge (v2, PBKDF2/SHA-256) signed for the "
            "caller and this sale, usable once before `expiresAt`. Find the counter whose derived key "
            "starts with `keyPrefix` (the page does it in a Web Worker: sales/static/sales/join_challenge.js) "
            "and send `{challenge, solution: {counter, derivedKey}}` to POST .../queue. At difficulty 0, "
            "`challenge` is null and the join needs no body."
        ),
        request=None,
        responses={
            **ok(200, "JoinChallengeResponse", JoinChallengeSerializer),
            **errors(TOKEN, SaleNotFound, NoWaitingRoom, ErrorCode.RATE_LIMITED),
        },
    )
    @action(detail=True, methods=["get"], url_path="queue/challenge")
    @rate_limit(group="queue_challenge", key="user", rate_setting="RATELIMIT_PURCHASE")
    def join_challenge(self, request, pk=None):
        issued = queue.challenge_for(user=request.user, sale_id=int(pk))
        return success(JoinChallengeSerializer(issued).data, "Solve this challenge to join the line")

    @join_queue.mapping.get
    @extend_schema(
        summary="The caller's place in the sale's waiting room",
        request=None,
        responses={
            **ok(200, "QueuePlaceResponse", QueuePlaceSerializer),
            **errors(TOKEN, SaleNotFound, NoWaitingRoom, NotInQueue),
        },
    )
    def queue_place(self, request, pk=None):
        return queue_place_answer(queue.place_of(user=request.user, sale_id=int(pk)), joining=False)

    @action(detail=True, methods=["post"], url_path="resume")
    def resume(self, request, pk=None):
        sale = services.resume_sale(sale_id=int(pk))
        return success(FlashSaleSerializer(sale).data, "Flash sale resumed")
