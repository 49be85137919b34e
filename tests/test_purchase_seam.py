"""The purchase seam (sales/purchase.py): one parser of a body, one naming of a refusal, one
implementation per database chosen at start-up, and the PostgreSQL function as its .sql file says."""

import json

import pytest
from django.db import connection
from django.utils import timezone

from sales import fastpath, purchase
from sales.exceptions import InsufficientStock, OverPurchaseLimit, SaleNotActive, SalePaused, SoldOut
from sales.serializers import PurchaseRequestSerializer
from sales.sql import body
from tests.factories import SaleFactory, UserFactory

BODIES = [
    {"saleId": 1, "quantity": 1},
    {"saleId": 1, "quantity": 5},
    {"saleId": 1, "quantity": 6},
    {"saleId": 1, "quantity": 0},
    {"saleId": 1, "quantity": True},
    {"saleId": 1, "quantity": 1.0},
    {"saleId": 1, "quantity": "1"},
    {"saleId": "1", "quantity": 1},
    {"saleId": 2**63, "quantity": 1},
    {"saleId": 1},
    {"quantity": 1},
    [1, 2],
    "text",
]


@pytest.mark.parametrize("data", BODIES)
def test_the_serializer_and_the_fast_path_accept_exactly_the_same_bodies(data):
    form = PurchaseRequestSerializer(data=data)
    accepted_by_serializer = form.is_valid()
    accepted_by_fast_path = fastpath._plain_order(json.dumps(data).encode())

    assert accepted_by_serializer == (accepted_by_fast_path is not None)
    if accepted_by_serializer:
        assert (form.validated_data["saleId"], form.validated_data["quantity"]) == accepted_by_fast_path


def test_a_refused_body_names_each_bad_field():
    with pytest.raises(purchase.InvalidOrder) as refused:
        purchase.parse_order({"saleId": "1", "quantity": 0})

    assert set(refused.value.errors) == {"saleId", "quantity"}


def test_the_purchase_paths_come_from_the_url_configuration():
    assert purchase.purchase_paths() == {"/api/v1/flashsales/purchase", "/api/v1/flashsales/purchase/"}


@pytest.mark.django_db
def test_the_backend_is_the_one_of_the_database_in_use():
    expected = purchase._take_on_postgresql if connection.vendor == "postgresql" else purchase._take_in_python
    assert purchase._take is expected


@pytest.mark.parametrize(
    "known, refusal",
    [
        ({"start_offset": 60, "paused": True, "current_stock": 0}, SaleNotActive),  # the window first
        ({"paused": True, "current_stock": 0}, SalePaused),  # then the pause
        ({"current_stock": 0}, SoldOut),
        ({"current_stock": 3, "quantity": 4, "purchase_limit": 3}, OverPurchaseLimit),
        ({"current_stock": 3, "quantity": 3, "purchase_limit": 5}, None),
        ({"current_stock": 2, "quantity": 3, "purchase_limit": 5}, InsufficientStock),
        ({"current_stock": None}, None),  # what the gate knows of a sale that is neither sold out nor paused
    ],
)
def test_one_function_names_every_refusal_in_order(known, refusal):
    now = timezone.now()
    start = now + timezone.timedelta(seconds=known.pop("start_offset", -60))
    named = purchase.refusal(
        sale_id=1,
        moment=now,
        start_time=start,
        end_time=start + timezone.timedelta(hours=1),
        paused=known.pop("paused", False),
        **known,
    )

    assert (type(named) if named is not None else None) is refusal


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_installed_purchase_function_is_the_newest_sql_file():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT prosrc, pg_get_function_identity_arguments(oid) FROM pg_proc WHERE proname = %s",
            ["flashsale_purchase"],
        )
        installed = cursor.fetchall()

    # Exactly one version: each migration that installs a version drops the one before.
    assert [arguments for _, arguments in installed] == [
        "p_user_id bigint, p_sale_id bigint, p_quantity integer, p_buyer_limit integer, p_purchase_limit integer"
    ]
    assert installed[0][0] == body("flashsale_purchase_v4")


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_purchase_on_postgresql_is_one_statement_through_the_function():
    from django.test.utils import CaptureQueriesContext

    sale = SaleFactory(original_stock=5)
    buyer = UserFactory()

    with CaptureQueriesContext(connection) as captured:
        result = purchase.purchase(user=buyer, sale_id=sale.pk, quantity=2)

    rule = [query["sql"] for query in captured.captured_queries if "flashsale_purchase" in query["sql"]]
    assert len(rule) == 1
    sale.refresh_from_db()
    assert (result.remaining_stock, sale.current_stock, result.stock_version, sale.stock_version) == (3, 3, 2, 2)
