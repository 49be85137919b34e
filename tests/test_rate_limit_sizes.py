"""The per-address limits sized from a measurement (issue 25, item 8): the API's global limit and the
schema's own, tighter one. Figures: docs/performance.md "One address" (bench/one_address.py)."""

import types

import pytest
from django.conf import settings as django_settings
from django.test import Client

from sales.models import FlashSale
from tests.error_shape import assert_error_shape
from tests.factories import SaleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_window(monkeypatch):
    """Every request of the test falls in the same rate-limit window (no second or minute boundary
    splits a burst in two); django-ratelimit reads the clock through its own module's `time`."""
    import django_ratelimit.core

    frozen = django_ratelimit.core.time.time()
    monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=lambda: frozen))


def test_the_default_limits_are_the_measured_ones():
    assert django_settings.RATELIMIT_GLOBAL == "20/s"
    assert django_settings.RATELIMIT_SCHEMA == "30/m"


def test_one_address_past_the_global_limit_gets_a_json_429_with_retry_after_and_others_go_on(one_window):
    sale = SaleFactory()
    client = Client()

    answers = [client.get(f"/api/v1/leaderboard?saleId={sale.pk}").status_code for _ in range(20)]
    limited = client.get(f"/api/v1/leaderboard?saleId={sale.pk}")
    other_address = Client(REMOTE_ADDR="10.9.9.9").get(f"/api/v1/leaderboard?saleId={sale.pk}")

    assert answers == [200] * 20
    assert_error_shape(limited, 429, "rate_limited")
    assert int(limited["Retry-After"]) == 1
    assert other_address.status_code == 200
    assert FlashSale.objects.get(pk=sale.pk).version == sale.version


def test_the_schema_and_swagger_ui_share_a_tighter_limit_of_their_own(one_window, settings):
    settings.RATELIMIT_SCHEMA = "3/m"
    client = Client()

    answers = [client.get(path).status_code for path in ("/api/schema/", "/api/docs/", "/api/schema/")]
    limited = client.get("/api/schema/")
    docs_limited = client.get("/api/docs/")
    api_still = client.get("/api/v1/leaderboard")
    other_address = Client(REMOTE_ADDR="10.9.9.9").get("/api/schema/")

    assert answers == [200, 200, 200]
    assert_error_shape(limited, 429, "rate_limited")
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert docs_limited.status_code == 429
    assert api_still.status_code == 200  # the schema's counter is not the API's
    assert other_address.status_code == 200
