from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from flashsale.pagination import PageQuerySerializer, paginate
from flashsale.responses import success
from flashsale.schema import VALIDATION, errors, ok, page_of
from leaderboard.selectors import chronological_purchases
from sales import services as sale_services
from sales.exceptions import SaleNotFound


class LeaderboardQuerySerializer(PageQuerySerializer):
    saleId = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)


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
            ),
            **errors(VALIDATION, SaleNotFound),
        },
    )
    def get(self, request):
        query = LeaderboardQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page, limit = query.validated_data["page"], query.validated_data["limit"]
        if query.validated_data.get("saleId") is not None:
            sale_services.get_sale(query.validated_data["saleId"])  # 404 sale_not_found, as every endpoint
        count, purchases = paginate(
            chronological_purchases(sale_id=query.validated_data.get("saleId")), page=page, limit=limit
        )
        return success(
            {"purchases": LeaderboardEntrySerializer(purchases, many=True).data},
            "Leaderboard",
            count=count,
            page=page,
            limit=limit,
        )
