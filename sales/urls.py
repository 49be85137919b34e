from django.urls import re_path
from rest_framework.routers import SimpleRouter

from sales.api import ActiveSaleView, FlashSaleViewSet, PurchaseView


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
    *router.urls,
]
