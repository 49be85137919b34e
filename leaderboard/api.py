from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from core.error_codes import ErrorCode
from core.ids import MAX_ID
from core.pagination import PageQuerySerializer
from core.responses import success
from core.schema import errors, ok, page_of
from leaderboard.selectors import purchase_count
from sales import selectors as sale_selectors
from sales.exceptions import SaleNotFound


class LeaderboardQuerySerializer(PageQuerySerializer):
    saleId = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False)
    after = serializers.IntegerField(
        min_value=1,
        max_value=MAX_ID,
        required=False,
        help_text="Keyset paging: the purchases after this purchaseId (a previous page's nextAfter). Not with page.",
    )

    def validate(self, attrs):
        if "after" in attrs and "page" in self.initial_data:
            raise serializers.ValidationError({"page": ["Use either page or after, not both."]})
        # Deep OFFSETs cost the database every row they skip: past the cap, page with `after`.
        if (attrs["page"] - 1) * attrs["limit"] > settings.LEADERBOARD_MAX_OFFSET:
            raise serializers.ValidationError(
                {
                    "page": [
                        f"Pages reach the first {settings.LEADERBOARD_MAX_OFFSET} purchases; "
                        "continue with after=<nextAfter>."
                    ]
                }
            )
        return attrs


class LeaderboardEntrySerializer(serializers.Serializer):
    purchaseId = serializers.IntegerField(source="pk")
    userName = serializers.CharField(source="user.name")
    saleId = serializers.IntegerField(source="sale_id")
    quantity = serializers.IntegerField()
    timestamp = serializers.DateTimeField(source="created_at")


class LeaderboardView(APIView):
    """Public: who bought, in the order they bought. Names only, never emails."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=["leaderboard"],
        summary="Successful purchases, oldest first (public: names, never emails)",
        parameters=[LeaderboardQuerySerializer],
        responses={
            **ok(
                200,
                "LeaderboardResponse",
                page_of("LeaderboardPage", "purchases", LeaderboardEntrySerializer),
                paginated=True,
                extra={
                    "nextAfter": serializers.IntegerField(
                        allow_null=True,
                        help_text="Pass as after= for the next page; null when this page is the last.",
                    )
                },
            ),
            **errors(ErrorCode.VALIDATION_ERROR, SaleNotFound),
        },
    )
    def get(self, request):
        query = LeaderboardQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page, limit = query.validated_data["page"], query.validated_data["limit"]
        sale_id, after = query.validated_data.get("saleId"), query.validated_data.get("after")
        if after is None:
            found = sale_selectors.chronological_purchases(sale_id=sale_id)[(page - 1) * limit : page * limit]
        else:
            anchor = sale_selectors.purchase_anchor(after)
            if anchor is None:
                raise serializers.ValidationError({"after": ["No purchase with this id."]})
            found = sale_selectors.purchases_after(anchor=anchor, sale_id=sale_id)[:limit]
        purchases = list(found)
        if sale_id is not None and not purchases:
            # 404 sale_not_found, as every endpoint. Only an empty page needs the read: a sale with
            # purchases cannot be deleted (PROTECT), so rows prove that it exists.
            sale_selectors.get_sale(sale_id)
        return success(
            {"purchases": LeaderboardEntrySerializer(purchases, many=True).data},
            "Leaderboard",
            count=purchase_count(sale_id=sale_id),
            page=page,
            limit=limit,
            nextAfter=purchases[-1].pk if len(purchases) == limit else None,
        )
