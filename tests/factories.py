from datetime import timedelta
from functools import lru_cache

import factory
from django.contrib.auth.hashers import make_password
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.models import User
from sales.models import FlashSale, Purchase

PASSWORD = "correct-horse-battery"


@lru_cache(maxsize=1)
def hashed_password() -> str:
    # Hashing is deliberately slow; every factory user shares one real hash of PASSWORD.
    return make_password(PASSWORD)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    name = factory.Sequence(lambda n: f"Buyer {n}")
    email = factory.Sequence(lambda n: f"buyer{n}@example.com")
    password = factory.LazyFunction(hashed_password)


class TokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Token

    user = factory.SubFactory(UserFactory)


class SaleFactory(factory.django.DjangoModelFactory):
    """A live sale by default: started a minute ago, ends in an hour."""

    class Meta:
        model = FlashSale

    name = factory.Sequence(lambda n: f"Sale {n}")
    start_time = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=1))
    end_time = factory.LazyAttribute(lambda sale: sale.start_time + timedelta(hours=1))
    original_stock = 200
    current_stock = factory.LazyAttribute(lambda sale: sale.original_stock)


class PurchaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Purchase

    user = factory.SubFactory(UserFactory)
    sale = factory.SubFactory(SaleFactory)
    quantity = 1
