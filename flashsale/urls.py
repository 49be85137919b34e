from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core.health import Liveness, Readiness
from core.metrics import metrics_view
from core.views import ApiNotFound
from live.pages import live_sale

api_v1: list[URLPattern | URLResolver] = [
    path("health", Liveness.as_view(), name="health"),
    re_path(r"^health/ready/?$", Readiness.as_view(), name="health-ready"),
    path("auth/", include("accounts.urls")),
    path("", include("sales.urls")),
    path("", include("leaderboard.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("metrics", metrics_view, name="metrics"),
    re_path(r"^api/schema/?$", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file (?script=): the CSP allows no inline script.
    re_path(r"^api/docs/?$", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    re_path(r"^api/", ApiNotFound.as_view()),
    # The live sale page (HTML); its data comes over ws/sales/... (live.routing).
    path("", live_sale, name="live-sale"),
    path("sales/<int:sale_id>/", live_sale, name="live-sale-detail"),
]

handler400 = "core.views.bad_request"
handler404 = "core.views.page_not_found"
handler500 = "core.views.server_error"
