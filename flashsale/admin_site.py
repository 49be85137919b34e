"""The admin site: flashsale's titles, and a sign-in that counts against the API login's limits."""

from django.contrib import admin
from django.http import HttpResponse
from django.urls import path

from accounts.login_limits import check_login_allowed
from core.ratelimit import RateLimited, check_rate
from sales.dashboard_views import make_views


class FlashsaleAdminSite(admin.AdminSite):
    site_header = "flashsale admin"
    site_title = "flashsale admin"
    index_title = "Flash sales"
    # The index with a link to the drop dashboard above the apps.
    index_template = "admin/flashsale_index.html"

    def get_urls(self):
        """Django's admin URLs and the drop dashboard's (sales/dashboard_views.py), staff only."""
        page, data = make_views(self)
        return [
            path("dashboard/", page, name="dashboard"),
            path("dashboard/data", data, name="dashboard-data"),
            *super().get_urls(),
        ]

    def login(self, request, extra_context=None):
        """Django's sign-in, counted against the same limits (and counters) as the API's login, per
        client address and for wrong passwords (accounts.login_limits): the admin must not be the
        easy way to guess staff passwords."""
        if request.method == "POST":
            try:
                check_rate(request, group="login", key="ip", rate_setting="RATELIMIT_LOGIN")
                email = request.POST.get("username")
                if email:
                    check_login_allowed(request, email=email)
            except RateLimited as limited:
                response = HttpResponse(
                    f"Too many sign-in attempts. Try again in {limited.retry_after} seconds.",
                    status=429,
                    content_type="text/plain; charset=utf-8",
                )
                response["Retry-After"] = str(limited.retry_after)
                return response
        return super().login(request, extra_context)
