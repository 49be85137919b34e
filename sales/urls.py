from django.urls import re_path
from rest_framework.routers import SimpleRouter

from sales.api import (
    ActiveSaleView,
    FlashSaleViewSet,
    PurchaseConfirmView,
    PurchaseListView,
    PurchaseReleaseView,
    PurchaseView,
)

# Up to 18 digits: every such id fits a bigint, so a longer one is a 404 before any query.
PURCHASE_ID = r"(?P<purchase_id>[0-9]{1,18})"


class OptionalSlashRouter(SimpleRouter):
    """Routes that answer with or without a trailing slash, like the rest of the API."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("flashsales", FlashSaleViewSet, basename="flashsale")

urlpatterns = [
    re_path(r"^flashsales/active/?$", ActiveSaleView.as_view(), name="active-sale"),
    re_path(r"^flashsales/purchase/?$", PurchaseView.as_view(), name="purchase"),
    re_path(r"^purchases/?$", PurchaseListView.as_view(), name="purchases"),
    re_path(rf"^purchases/{PURCHASE_ID}/confirm/?$", PurchaseConfirmView.as_view(), name="purchase-confirm"),
    re_path(rf"^purchases/{PURCHASE_ID}/release/?$", PurchaseReleaseView.as_view(), name="purchase-release"),
    *router.urls,
]
