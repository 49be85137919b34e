"""The drop dashboard: a staff page of the admin site (flashsale/admin_site.py) and the JSON it polls.

The page arrives with its first data in a JSON block (no inline script: the CSP), and
sales/static/sales/dashboard.js redraws it from `dashboard_data` every few seconds (3: each open
dashboard spends 20 of RATELIMIT_PAGES' per-address requests a minute).
"""

from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from sales import dashboard
from sales.models import FlashSale


def dashboard_payload(moment: datetime, sale_id: int | None = None) -> dict[str, Any]:
    """The timeline, and the figures of every live sale, or of sale `sale_id` alone (any status)."""
    if sale_id is None:
        shown = dashboard.live_sales(moment)
    else:
        sale = FlashSale.objects.filter(pk=sale_id).first()
        if sale is None:
            raise Http404("No flash sale with this id.")
        shown = [sale]
    return {
        "now": moment.isoformat(),
        "saleId": sale_id,
        "timeline": [dashboard.timeline_json(sale, moment) for sale in dashboard.timeline(moment)],
        "sales": [dashboard.figures_json(dashboard.sale_figures(sale, moment)) for sale in shown],
    }


def _sale_id(request: HttpRequest) -> int | None:
    value = request.GET.get("sale", "")
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise Http404("No flash sale with this id.")
    return int(value)


def make_views(site: Any) -> tuple[Any, Any]:
    """The page and its data as views of `site` (its titles, its staff-only `admin_view`)."""

    @require_safe
    def dashboard_page(request: HttpRequest) -> HttpResponse:
        sale_id = _sale_id(request)
        payload = dashboard_payload(timezone.now(), sale_id)
        title = "Drop dashboard" if sale_id is None else f"Drop dashboard: {payload['sales'][0]['name']}"
        context = {**site.each_context(request), "title": title, "payload": payload, "sale_id": sale_id}
        return TemplateResponse(request, "admin/sales/dashboard.html", context)

    @never_cache
    @require_safe
    def dashboard_data(request: HttpRequest) -> JsonResponse:
        return JsonResponse(dashboard_payload(timezone.now(), _sale_id(request)), encoder=DjangoJSONEncoder)

    return site.admin_view(dashboard_page), site.admin_view(dashboard_data)
