"""Wrong passwords are limited per (email, address) tightly and per email loosely, so that guessing
stays expensive and other addresses' failures never lock the owner out of their own address."""

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/api/v1/auth/login"


@pytest.fixture
def owner(db):
    return UserFactory(email="owner@example.com")


def login(address: str, email: str, password: str):
    return APIClient().post(LOGIN, {"email": email, "password": password}, format="json", REMOTE_ADDR=address)


def assert_limited(response):
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response["Retry-After"]) >= 1


def test_ten_wrong_passwords_from_other_addresses_do_not_lock_the_owners_login(owner, settings):
    settings.RATELIMIT_LOGIN_FAILURES = "3/d"
    settings.RATELIMIT_LOGIN_EMAIL = "5/d"
    guesses = [login(f"198.51.100.{n}", owner.email, "wrong-guess").status_code for n in range(1, 11)]

    response = login("203.0.113.9", owner.email, PASSWORD)

    assert guesses == [401] * 10
    assert response.status_code == 200
    assert response.json()["data"]["token"] == Token.objects.get(user=owner).key


def test_wrong_passwords_from_one_address_lock_only_that_address_for_that_email(owner, settings):
    settings.RATELIMIT_LOGIN_FAILURES = "3/d"
    for _ in range(3):
        assert login("198.51.100.1", owner.email, "wrong-guess").status_code == 401

    same_address = login("198.51.100.1", owner.email, PASSWORD)
    other_email = login("198.51.100.1", "someone@example.com", "wrong-guess")
    assert not Token.objects.filter(user=owner).exists()
    other_address = login("203.0.113.9", owner.email, PASSWORD)

    assert_limited(same_address)
    assert other_email.status_code == 401
    assert other_address.status_code == 200
    assert Token.objects.filter(user=owner).exists()


def test_past_the_per_email_limit_every_address_gets_one_wrong_guess(owner, settings):
    settings.RATELIMIT_LOGIN_FAILURES = "10/d"
    settings.RATELIMIT_LOGIN_EMAIL = "3/d"
    for address in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        assert login(address, owner.email, "wrong-guess").status_code == 401

    again = login("198.51.100.1", owner.email, PASSWORD)
    fresh = login("198.51.100.4", owner.email, "wrong-guess")
    fresh_again = login("198.51.100.4", owner.email, "wrong-guess")
    owners_address = login("203.0.113.9", owner.email, PASSWORD)

    assert_limited(again)
    assert fresh.status_code == 401
    assert_limited(fresh_again)
    assert owners_address.status_code == 200
    assert Token.objects.filter(user=owner).count() == 1


def test_correct_logins_are_not_counted_as_failures(owner, settings):
    settings.RATELIMIT_LOGIN_FAILURES = "1/d"
    settings.RATELIMIT_LOGIN_EMAIL = "1/d"

    statuses = [login("198.51.100.1", owner.email, PASSWORD).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]


def test_ipv6_addresses_of_one_slash_64_share_their_failures(owner, settings):
    settings.RATELIMIT_LOGIN_FAILURES = "2/d"
    login("2001:db8::1", owner.email, "wrong-guess")
    login("2001:db8::2", owner.email, "wrong-guess")

    same_network = login("2001:db8::3", owner.email, PASSWORD)
    other_network = login("2001:db8:1::1", owner.email, PASSWORD)

    assert_limited(same_network)
    assert other_network.status_code == 200


def test_admin_and_api_wrong_passwords_share_one_count(client, settings):
    settings.RATELIMIT_LOGIN_FAILURES = "2/d"
    staff = UserFactory(email="boss@example.com", is_staff=True)
    admin_guess = client.post(reverse("admin:login"), {"username": "Boss@Example.com", "password": "wrong"})
    api_guess = APIClient().post(LOGIN, {"email": staff.email, "password": "wrong"}, format="json")

    api_login = APIClient().post(LOGIN, {"email": staff.email, "password": PASSWORD}, format="json")
    admin_login = client.post(reverse("admin:login"), {"username": staff.email, "password": PASSWORD})

    assert (admin_guess.status_code, api_guess.status_code) == (200, 401)
    assert_limited(api_login)
    assert admin_login.status_code == 429
    assert "_auth_user_id" not in client.session and not Token.objects.exists()
