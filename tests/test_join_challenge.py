"""One place per account, bots made expensive (issue 22): a waiting room's joins count per user and per
address, and a sale with a join difficulty takes a place only for a solved, signed, single-use,
expiring challenge of that buyer for that sale (sales.join_challenge, ALTCHA's scheme)."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import SimpleNamespace

import altcha
import pytest
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sales import join_challenge
from sales.models import FlashSale, QueuePlace
from tests.conftest import client_for
from tests.factories import SaleFactory, UserFactory

pytestmark = pytest.mark.django_db

SALES = "/api/v1/flashsales/"
# Small enough that Python solves it in milliseconds; the figures at real difficulties are
# bench/join_challenge.py's.
DIFFICULTY = 8


def queue_path(sale_id) -> str:
    return f"/api/v1/flashsales/{sale_id}/queue"


def fetch_challenge(api, sale_id) -> dict:
    response = api.get(f"{queue_path(sale_id)}/challenge")
    assert response.status_code == 200, response.json()
    return response.json()["data"]


def solved(issued: dict) -> dict:
    """The join body for the challenge GET .../queue/challenge gave, solved as the page's worker would."""
    challenge = issued["challenge"]
    solution = altcha.solve_challenge(altcha.Challenge.from_dict(challenge), timeout=30)
    assert solution is not None
    return {"challenge": challenge, "solution": {"counter": solution.counter, "derivedKey": solution.derived_key}}


def join(api, sale_id, body=None):
    return api.post(queue_path(sale_id), body, format="json")


def refusal(response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["details"].get("reason")


@pytest.fixture
def hard_sale():
    return SaleFactory(waiting_room=True, join_difficulty=DIFFICULTY)


# --- the sale's setting -------------------------------------------------------------------------


def test_join_difficulty_is_off_by_default_and_staff_set_it_on_create_and_patch(staff_api):
    start = timezone.now() + timedelta(hours=1)
    window = {"startTime": start.isoformat(), "endTime": (start + timedelta(hours=1)).isoformat()}
    plain = staff_api.post(SALES, {"name": "Plain", **window}, format="json")
    hard = staff_api.post(SALES, {"name": "Drop", "waitingRoom": True, "joinDifficulty": 5000, **window}, format="json")
    edited = staff_api.patch(
        f"{SALES}{plain.json()['data']['saleId']}", {"version": 1, "joinDifficulty": 40}, format="json"
    )

    assert (plain.status_code, hard.status_code, edited.status_code) == (201, 201, 200)
    assert plain.json()["data"]["joinDifficulty"] == 0
    assert hard.json()["data"]["joinDifficulty"] == 5000
    assert edited.json()["data"]["joinDifficulty"] == 40
    assert sorted(FlashSale.objects.values_list("join_difficulty", flat=True)) == [40, 5000]


@pytest.mark.parametrize("value", [-1, 100_001, "5", 2.5, True])
def test_an_out_of_range_join_difficulty_is_refused_and_changes_nothing(staff_api, value):
    sale = SaleFactory(waiting_room=True)

    response = staff_api.patch(f"{SALES}{sale.pk}", {"version": 1, "joinDifficulty": value}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "joinDifficulty" in response.json()["error"]["details"]
    assert FlashSale.objects.values_list("join_difficulty", "version").get(pk=sale.pk) == (0, 1)


# --- the challenge ------------------------------------------------------------------------------


def test_the_challenge_is_signed_for_the_buyer_and_the_sale_and_expires(buyer_api, buyer, hard_sale, settings):
    before = timezone.now()

    data = fetch_challenge(buyer_api, hard_sale.pk)

    assert (data["saleId"], data["difficulty"]) == (hard_sale.pk, DIFFICULTY)
    expires_at = parse_datetime(data["expiresAt"])
    assert before < expires_at <= before + timedelta(seconds=settings.JOIN_CHALLENGE_SECONDS + 1)
    parameters = data["challenge"]["parameters"]
    assert parameters["algorithm"] == "PBKDF2/SHA-256"
    assert parameters["data"] == {"saleId": hard_sale.pk, "userId": buyer.pk}
    assert parameters["expiresAt"] == int(expires_at.timestamp())
    assert data["challenge"]["signature"]


def test_each_challenge_is_new(buyer_api, hard_sale):
    nonces = {fetch_challenge(buyer_api, hard_sale.pk)["challenge"]["parameters"]["nonce"] for _ in range(3)}

    assert len(nonces) == 3


def test_a_sale_without_a_join_difficulty_gives_no_challenge(buyer_api):
    sale = SaleFactory(waiting_room=True)

    data = fetch_challenge(buyer_api, sale.pk)

    assert data == {"saleId": sale.pk, "difficulty": 0, "expiresAt": None, "challenge": None}


def test_no_challenge_for_a_sale_without_a_waiting_room_or_no_sale(buyer_api):
    plain = SaleFactory()

    no_room = buyer_api.get(f"{queue_path(plain.pk)}/challenge")
    missing = buyer_api.get(f"{queue_path(999_999)}/challenge")

    assert (no_room.status_code, no_room.json()["error"]["code"]) == (409, "no_waiting_room")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "sale_not_found")


# --- joining with a solution ---------------------------------------------------------------------


def test_a_solved_challenge_takes_a_place_and_a_repeat_needs_no_new_one(buyer_api, buyer, hard_sale):
    body = solved(fetch_challenge(buyer_api, hard_sale.pk))

    first = join(buyer_api, hard_sale.pk, body)
    repeat = join(buyer_api, hard_sale.pk)

    assert first.status_code == 201, first.json()
    assert repeat.status_code == 200, repeat.json()
    assert repeat.json()["data"] == first.json()["data"]
    assert QueuePlace.objects.filter(sale=hard_sale).count() == 1
    assert QueuePlace.objects.filter(sale=hard_sale, user=buyer).exists()


def test_a_sale_without_a_join_difficulty_takes_a_place_without_a_body(buyer_api, buyer):
    sale = SaleFactory(waiting_room=True)

    response = join(buyer_api, sale.pk)

    assert response.status_code == 201, response.json()
    assert QueuePlace.objects.filter(sale=sale, user=buyer).count() == 1


def test_a_join_without_a_solution_is_refused_and_takes_no_place(buyer_api, hard_sale):
    empty = join(buyer_api, hard_sale.pk)
    half = join(buyer_api, hard_sale.pk, {"challenge": fetch_challenge(buyer_api, hard_sale.pk)["challenge"]})

    assert refusal(empty) == (400, "challenge_failed", "missing")
    assert refusal(half) == (400, "challenge_failed", "missing")
    assert not QueuePlace.objects.exists()


def _neighbouring_try(body):
    # The derived key of the try before the solution: work done, but not the answer.
    parameters = altcha.Challenge.from_dict(body["challenge"]).parameters
    counter = body["solution"]["counter"] - 1
    password = bytes.fromhex(parameters.nonce) + counter.to_bytes(4, "big")
    body["solution"] = {
        "counter": counter,
        "derivedKey": altcha.derive_key_pbkdf2(parameters, bytes.fromhex(parameters.salt), password).hex(),
    }


def _wrong_key(body):
    body["solution"]["derivedKey"] = "00" * 32


def _other_user_in_data(body):
    body["challenge"]["parameters"]["data"]["userId"] += 1


def _easier(body):
    body["challenge"]["parameters"]["keyPrefix"] = body["challenge"]["parameters"]["keyPrefix"][:2]


def _later_expiry(body):
    body["challenge"]["parameters"]["expiresAt"] += 3600


def _no_signature(body):
    del body["challenge"]["signature"]


def _not_an_object(body):
    body["challenge"] = "challenge"


def _counter_not_a_number(body):
    body["solution"] = {"counter": "7", "derivedKey": 7}


@pytest.mark.parametrize(
    "spoil",
    [
        _neighbouring_try,
        _wrong_key,
        _other_user_in_data,
        _easier,
        _later_expiry,
        _no_signature,
        _not_an_object,
        _counter_not_a_number,
    ],
)
def test_a_wrong_or_tampered_solution_is_refused_and_takes_no_place(buyer_api, hard_sale, spoil):
    body = solved(fetch_challenge(buyer_api, hard_sale.pk))
    spoil(body)

    response = join(buyer_api, hard_sale.pk, body)

    assert refusal(response) == (400, "challenge_failed", "invalid")
    assert not QueuePlace.objects.exists()
    # The refused solution's challenge was not used up: unspoiled, it still joins.
    assert join(buyer_api, hard_sale.pk, solved(fetch_challenge(buyer_api, hard_sale.pk))).status_code == 201


def test_another_buyers_solution_is_refused_and_takes_no_place(buyer_api, hard_sale):
    other_api = client_for(UserFactory())
    theirs = solved(fetch_challenge(other_api, hard_sale.pk))

    response = join(buyer_api, hard_sale.pk, theirs)

    assert refusal(response) == (400, "challenge_failed", "not_yours")
    assert not QueuePlace.objects.exists()
    assert join(other_api, hard_sale.pk, theirs).status_code == 201


def test_another_sales_solution_is_refused_and_takes_no_place(buyer_api, hard_sale):
    other_sale = SaleFactory(waiting_room=True, join_difficulty=DIFFICULTY)
    for_other_sale = solved(fetch_challenge(buyer_api, other_sale.pk))

    response = join(buyer_api, hard_sale.pk, for_other_sale)

    assert refusal(response) == (400, "challenge_failed", "not_yours")
    assert not QueuePlace.objects.exists()


def test_an_expired_solution_is_refused_and_takes_no_place(buyer_api, hard_sale, settings, monkeypatch):
    issued_at = timezone.now() - timedelta(seconds=settings.JOIN_CHALLENGE_SECONDS + 60)
    monkeypatch.setattr(join_challenge, "timezone", SimpleNamespace(now=lambda: issued_at))
    body = solved(fetch_challenge(buyer_api, hard_sale.pk))
    monkeypatch.undo()

    response = join(buyer_api, hard_sale.pk, body)

    assert refusal(response) == (400, "challenge_failed", "expired")
    assert not QueuePlace.objects.exists()


def test_a_used_solution_is_refused(buyer_api, buyer, hard_sale):
    body = solved(fetch_challenge(buyer_api, hard_sale.pk))
    assert join(buyer_api, hard_sale.pk, body).status_code == 201
    # Staff took the place away (the admin): the solution that took it cannot take another.
    QueuePlace.objects.filter(user=buyer).delete()

    again = join(buyer_api, hard_sale.pk, body)

    assert refusal(again) == (400, "challenge_failed", "used")
    assert not QueuePlace.objects.exists()


def test_redeeming_a_solution_twice_is_refused_the_second_time(buyer_api, buyer, hard_sale):
    body = solved(fetch_challenge(buyer_api, hard_sale.pk))
    join_challenge.redeem(user=buyer, sale=hard_sale, **body)

    with pytest.raises(join_challenge.ChallengeFailed) as refused:
        join_challenge.redeem(user=buyer, sale=hard_sale, **body)

    assert refused.value.details == {"saleId": hard_sale.pk, "reason": "used"}


class _CacheDown:
    """What ResilientRedisCache answers while Redis is unreachable: add False, get None."""

    def add(self, *args, **kwargs):
        return False

    def get(self, *args, **kwargs):
        return None


def test_while_the_cache_is_down_a_solution_still_takes_its_one_place(buyer_api, buyer, hard_sale, monkeypatch):
    body = solved(fetch_challenge(buyer_api, hard_sale.pk))
    monkeypatch.setattr(join_challenge, "cache", _CacheDown())

    first = join(buyer_api, hard_sale.pk, body)
    again = join(buyer_api, hard_sale.pk, body)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["data"] == first.json()["data"]
    assert QueuePlace.objects.filter(sale=hard_sale, user=buyer).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twin_joins_with_one_solution_take_one_place(settings):
    settings.RATELIMIT_ENABLE = False
    sale = SaleFactory(waiting_room=True, join_difficulty=DIFFICULTY)
    api = client_for(UserFactory())
    body = solved(fetch_challenge(api, sale.pk))

    def twin(_):
        try:
            return join(api, sale.pk, body)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(twin, range(6)))

    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(201) == 1, [answer.json() for answer in answers]
    assert set(statuses) <= {200, 201, 400}
    assert all(refusal(a)[1:] == ("challenge_failed", "used") for a in answers if a.status_code == 400)
    assert QueuePlace.objects.filter(sale=sale).count() == 1


# --- rate limits --------------------------------------------------------------------------------


def test_joins_beyond_the_per_address_rate_are_refused_429_and_take_no_place(settings):
    settings.RATELIMIT_QUEUE_JOIN_IP = "3/h"
    sale = SaleFactory(waiting_room=True)
    buyers = [UserFactory() for _ in range(4)]

    answers = [join(client_for(buyer), sale.pk) for buyer in buyers]
    elsewhere = client_for(UserFactory())
    other_address = elsewhere.post(queue_path(sale.pk), REMOTE_ADDR="198.51.100.7")

    assert [answer.status_code for answer in answers] == [201, 201, 201, 429]
    assert answers[3].json()["error"]["code"] == "rate_limited"
    assert int(answers[3]["Retry-After"]) >= 1
    assert other_address.status_code == 201
    assert not QueuePlace.objects.filter(user=buyers[3]).exists()
    assert QueuePlace.objects.filter(sale=sale).count() == 4


def test_joins_beyond_the_per_user_rate_are_refused_429(buyer_api, settings):
    settings.RATELIMIT_PURCHASE = "2/h"
    sale = SaleFactory(waiting_room=True)

    statuses = [join(buyer_api, sale.pk).status_code for _ in range(3)]

    assert statuses == [201, 200, 429]
    assert QueuePlace.objects.filter(sale=sale).count() == 1


def test_staff_set_the_join_difficulty_in_the_admin_within_its_bounds(client, staff):
    from django.urls import reverse

    from tests.admin_pages import form_data

    client.force_login(staff)
    sale = SaleFactory(waiting_room=True, start_time=timezone.now() + timedelta(days=1))
    url = reverse("admin:sales_flashsale_change", args=[sale.pk])
    data = form_data(client.get(url).content.decode(), "flashsale_form")
    assert data["join_difficulty"] == "0"

    too_hard = client.post(url, {**data, "join_difficulty": "100001"})
    saved = client.post(url, {**data, "join_difficulty": "5000"})

    assert too_hard.status_code == 200 and "join_difficulty" in too_hard.context["adminform"].form.errors
    assert saved.status_code == 302
    assert FlashSale.objects.values_list("join_difficulty", "version").get(pk=sale.pk) == (5000, 2)
