"""The user behind a cached token (accounts/authentication.py) is exactly the user the database holds.

A cache hit used to rebuild the user with its values shifted one field over: `is_superuser` held the
email, `name` held True, `is_active` held the superuser flag. Each test here reads the token once from
the database, then again from the cache, and compares the two users.
"""

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache

from accounts.authentication import CachedTokenAuthentication, token_cache_key
from accounts.models import User
from live import realtime
from sales.models import FlashSale, Purchase
from tests.conftest import client_for
from tests.factories import SaleFactory, TokenFactory, UserFactory

pytestmark = pytest.mark.django_db

PERMISSIONS = ["sales.view_flashsale", "sales.change_flashsale", "sales.delete_purchase", "accounts.add_user"]


def every_field(user: User) -> dict:
    # Deferred fields load from the database on access, so this is the whole row as the user sees it.
    return {field.attname: getattr(user, field.attname) for field in User._meta.concrete_fields}


def staff_who_may_view_sales() -> User:
    user = UserFactory(name="Grace Staff", is_staff=True)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="sales", codename="view_flashsale"))
    return user


@pytest.mark.parametrize(
    "make_user",
    [
        lambda: UserFactory(name="Ada Buyer"),
        staff_who_may_view_sales,
        lambda: User.objects.create_superuser("root@example.com", name="Root", password="correct-horse-battery"),
    ],
    ids=["buyer", "staff", "superuser"],
)
def test_a_cache_hit_yields_the_user_the_database_holds(make_user, django_assert_num_queries):
    user = make_user()
    token = TokenFactory(user=user)
    auth = CachedTokenAuthentication()
    from_database, _ = auth.authenticate_credentials(token.key)

    with django_assert_num_queries(0):  # proves the second answer is the cache's
        from_cache, cached_token = auth.authenticate_credentials(token.key)

    stored = User.objects.get(pk=user.pk)
    assert every_field(from_cache) == every_field(stored) == every_field(from_database)
    assert (from_cache.is_active, from_cache.is_superuser, from_cache.name) == (True, stored.is_superuser, stored.name)
    assert cached_token.user_id == stored.pk
    for permission in PERMISSIONS:
        assert from_cache.has_perm(permission) == stored.has_perm(permission), permission
    assert from_cache.has_perm("sales.view_flashsale") is stored.is_staff


def test_a_positional_entry_left_by_an_earlier_release_is_a_miss_not_a_scrambled_user():
    user = UserFactory(name="Ada Buyer")
    token = TokenFactory(user=user)
    cache.set(token_cache_key(token.key), (user.pk, user.email, user.name, True, False, False), 60)

    found, _ = CachedTokenAuthentication().authenticate_credentials(token.key)

    assert every_field(found) == every_field(User.objects.get(pk=user.pk))
    assert found.is_superuser is False
    assert cache.get(token_cache_key(token.key))["email"] == user.email  # rewritten keyed by name


def test_the_purchase_event_of_a_second_purchase_names_the_buyer(monkeypatch, django_capture_on_commit_callbacks):
    buyer = UserFactory(name="Ada Lovelace")
    client = client_for(buyer)
    sale = SaleFactory(original_stock=10)
    broadcasts = []
    monkeypatch.setattr(realtime, "broadcast", lambda group, handler, message: broadcasts.append(message))

    with django_capture_on_commit_callbacks(execute=True):
        first = client.post("/api/v1/flashsales/purchase", {"saleId": sale.pk, "quantity": 1}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        second = client.post("/api/v1/flashsales/purchase", {"saleId": sale.pk, "quantity": 2}, format="json")

    assert (first.status_code, second.status_code) == (201, 201)
    names = [message["purchase"]["userName"] for message in broadcasts if "purchase" in message]
    assert names == ["Ada Lovelace", "Ada Lovelace"]  # the second one's user came from the cache
    assert list(Purchase.objects.order_by("pk").values_list("user_id", "quantity")) == [(buyer.pk, 1), (buyer.pk, 2)]
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 7
