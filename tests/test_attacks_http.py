"""Denial of service over HTTP by one client (issue 12, items 3-4): page floods, slow headers."""

import pytest
from django.test import Client

from sales.models import FlashSale
from tests.factories import SaleFactory

pytestmark = pytest.mark.django_db


def test_html_pages_are_rate_limited_per_client_address(settings):
    settings.RATELIMIT_PAGES = "2/d"
    sale = SaleFactory()
    browser = Client()

    statuses = [browser.get(f"/sales/{sale.pk}/").status_code for _ in range(2)]
    limited = browser.get("/")
    elsewhere = Client(REMOTE_ADDR="10.9.9.9").get("/")

    assert statuses == [200, 200]
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert int(limited["Retry-After"]) >= 1
    assert elsewhere.status_code == 200
    assert FlashSale.objects.get(pk=sale.pk).version == sale.version


def test_pages_and_api_are_counted_apart(settings):
    settings.RATELIMIT_PAGES = "1/d"
    settings.RATELIMIT_GLOBAL = "1/d"
    client = Client()

    assert (client.get("/").status_code, client.get("/api/v1/leaderboard").status_code) == (200, 200)
    assert (client.get("/").status_code, client.get("/api/v1/leaderboard").status_code) == (429, 429)


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/health/ready", "/api/v1/health/ready/"])
def test_health_probes_are_never_limited(settings, path):
    settings.RATELIMIT_GLOBAL = "1/d"
    client = Client()

    assert [client.get(path).status_code for _ in range(3)] in ([200] * 3, [503] * 3)


@pytest.mark.parametrize("path", ["/api/v1/healthz", "/api/v1/health/", "/api/v1/health/ready/more"])
def test_paths_that_only_start_like_health_are_limited(settings, path):
    settings.RATELIMIT_GLOBAL = "2/d"
    client = Client()

    statuses = [client.get(path).status_code for _ in range(3)]

    assert statuses == [404, 404, 429]
