"""Every key of `error.details` is camelCase, like the rest of the API (issue 25, item 12)."""

import pytest
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from accounts.models import User
from core.errors import api_exception_handler
from sales.models import FlashSale, Purchase
from tests.error_shape import assert_error_shape
from tests.factories import SaleFactory

pytestmark = pytest.mark.django_db

EXPECTED_AN_OBJECT = {"nonFieldErrors": ["Invalid data. Expected a dictionary, but got list."]}


def post_list(client, path: str):
    return client.generic("POST", path, "[1, 2]", content_type="application/json")


def test_a_register_body_that_is_a_list_names_non_field_errors_in_camel_case_and_creates_no_user(api):
    response = post_list(api, "/api/v1/auth/register")

    body = assert_error_shape(response, 400, "validation_error")
    assert body["error"]["details"] == EXPECTED_AN_OBJECT
    assert not User.objects.exists()


def test_a_login_body_that_is_a_list_names_non_field_errors_in_camel_case(api):
    body = assert_error_shape(post_list(api, "/api/v1/auth/login"), 400, "validation_error")

    assert body["error"]["details"] == EXPECTED_AN_OBJECT


def test_a_purchase_body_that_is_a_list_names_non_field_errors_in_camel_case_and_sells_nothing(buyer_api):
    sale = SaleFactory(original_stock=10)

    body = assert_error_shape(post_list(buyer_api, "/api/v1/flashsales/purchase"), 400, "validation_error")

    assert body["error"]["details"] == EXPECTED_AN_OBJECT
    assert not Purchase.objects.exists()
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 10


def test_a_sale_created_from_a_list_names_non_field_errors_in_camel_case_and_creates_nothing(staff_api):
    body = assert_error_shape(post_list(staff_api, "/api/v1/flashsales"), 400, "validation_error")

    assert body["error"]["details"] == EXPECTED_AN_OBJECT
    assert not FlashSale.objects.exists()


class _Line(serializers.Serializer):
    unit_price = serializers.IntegerField()


class _Order(serializers.Serializer):
    lines = _Line(many=True)
    delivery_notes = serializers.ListField(child=serializers.IntegerField())

    def validate(self, attrs):
        raise serializers.ValidationError("never valid")


def test_nested_serializer_errors_are_camel_case_at_every_depth():
    form = _Order(data={"lines": [{"unit_price": 1}, {"unit_price": "x"}], "delivery_notes": [1, "y"]})
    assert not form.is_valid()

    response = api_exception_handler(ValidationError(form.errors), {})

    assert response is not None and response.status_code == 400
    assert response.data["error"]["details"] == {
        "lines": {"1": {"unitPrice": ["A valid integer is required."]}},
        "deliveryNotes": {"1": ["A valid integer is required."]},
    }


def test_errors_of_a_serializers_own_validate_are_non_field_errors_in_camel_case():
    form = _Order(data={"lines": [], "delivery_notes": []})
    assert not form.is_valid()

    response = api_exception_handler(ValidationError(form.errors), {})

    assert response is not None
    assert response.data["error"]["details"] == {"nonFieldErrors": ["never valid"]}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("non_field_errors", "nonFieldErrors"),
        ("saleId", "saleId"),
        ("email", "email"),
        (3, "3"),
        ("__all__", "__all__"),
    ],
)
def test_camel_case_spells_snake_case_keys_as_the_api_does(key, expected):
    from core.errors import camel_case

    assert camel_case(key) == expected
