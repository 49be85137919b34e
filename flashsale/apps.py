from django.contrib.admin.apps import AdminConfig


class FlashsaleAdminConfig(AdminConfig):
    """django.contrib.admin with flashsale's site as `admin.site` (rate-limited sign-in, titles)."""

    default_site = "flashsale.admin_site.FlashsaleAdminSite"
