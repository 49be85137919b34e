"""A waiting room's plain join (`POST .../queue` with no body or `{}`) and place read (`GET .../queue`)
are answered before DRF (sales.queue_fastpath) with exactly the answer DRF's view gives: status,
every header in order, the body's bytes and the recorded error code, for every outcome. Everything
the fast path is not sure of reaches DRF's view, which stays the contract; a first join is one
statement on PostgreSQL and a repeat takes no position."""

import contextlib
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.core.cache import cache, caches
from django.db import OperationalError, connection
from django.test import TestCase, override_settings
from django.utils import timezone

from accounts.authentication import token_cache_key
from sales import gate, line_cache, purchase, queue, selectors
from sales.api import FlashSaleViewSet
from sales.models import FlashSale, QueuePlace
from sales.queue_fastpath import QueueFastPathMiddleware
from tests.factories import SaleFactory, UserFactory
from tests.test_plain_purchase import received

pytestmark = pytest.mark.django_db


@contextlib.contextmanager
def through_drf():
    """The fast path steps aside: the request reaches DRF's view."""
    with mock.patch.object(QueueFastPathMiddleware, "_answer", return_value=None):
        yield


@contextlib.contextmanager
def never_reaching_drf():
    with mock.patch.object(FlashSaleViewSet, "dispatch", side_effect=AssertionError("reached DRF")):
        yield


@pytest.fixture
def known_buyer(buyer_api):
    """The buyer's token is cached, as for every request after a token's first."""
    assert buyer_api.get("/api/v1/flashsales").status_code == 200
    return buyer_api


def path(sale_id, slash=False):
    return f"/api/v1/flashsales/{sale_id}/queue" + ("/" if slash else "")


def join(client, sale_id, body=None, **extra):
    if body is None:
        return client.generic("POST", path(sale_id), **extra)
    return client.generic("POST", path(sale_id), body, content_type="application/json", **extra)


def waiting_room(**fields):
    return SaleFactory(waiting_room=True, **fields)


def drawn(**fields):
    """A started waiting-room sale whose line the clock has drawn: joins number themselves."""
    sale = waiting_room(**fields)
    queue.number_places()
    sale.refresh_from_db()
    assert sale.queue_drawn_at is not None
    return sale


@pytest.mark.parametrize("variant", ["no-body", "empty-object", "trailing-slash", "pre-queue", "undrawn"])
def test_a_first_join_never_reaches_drf_and_answers_byte_for_byte_as_drf(known_buyer, buyer, variant):
    if variant == "pre-queue":
        sale = waiting_room(start_time=timezone.now() + timedelta(minutes=5))
    elif variant == "undrawn":
        sale = waiting_room()
    else:
        sale = drawn(admitted_through=0)
    made = []
    seam = queue.join

    def recorded(**kwargs):
        made.append(seam(**kwargs))
        return made[-1]

    request = {
        "no-body": lambda client: join(client, sale.pk),
        "empty-object": lambda client: join(client, sale.pk, "{}"),
        "trailing-slash": lambda client: client.post(path(sale.pk, slash=True)),
        "pre-queue": lambda client: join(client, sale.pk, " { } "),
        "undrawn": lambda client: join(client, sale.pk),
    }[variant]
    with mock.patch.object(queue, "join", side_effect=recorded), never_reaching_drf():
        fast = request(known_buyer)
    # DRF's view renders the same place (its seam answers with it, taking nothing).
    with mock.patch.object(queue, "join", return_value=made[0]), through_drf():
        drf = request(known_buyer)

    assert fast.status_code == 201
    assert received(fast) == received(drf)
    place = QueuePlace.objects.get(sale=sale, user=buyer)
    data = fast.json()["data"]
    assert data["status"] == "waiting"
    assert data["position"] == place.position
    assert (place.position is None) == (variant in ("pre-queue", "undrawn"))
    assert place.pre_queue == (variant == "pre-queue")


def _repeat(buyer):
    sale = drawn()
    queue.join(user=buyer, sale_id=sale.pk)
    return sale


def _admitted(buyer):
    sale = drawn(admitted_through=1)
    QueuePlace.objects.create(sale=sale, user=buyer, position=1, admitted_until=timezone.now() + timedelta(hours=1))
    return sale


def _expired(buyer):
    sale = drawn(admitted_through=1)
    QueuePlace.objects.create(sale=sale, user=buyer, position=1, admitted_until=timezone.now() - timedelta(minutes=1))
    return sale


def _closed_place(buyer):
    sale = _repeat(buyer)
    FlashSale.objects.filter(pk=sale.pk).update(current_stock=0)
    return sale


def _unknown_sale(buyer):
    return mock.Mock(pk=2_000_000_000)


def _no_waiting_room(buyer):
    return SaleFactory()


def _queue_not_open(buyer):
    return waiting_room(start_time=timezone.now() + timedelta(hours=2))


def _sold_out(buyer):
    return waiting_room(original_stock=3, current_stock=0)


def _ended(buyer):
    start = timezone.now() - timedelta(hours=2)
    return waiting_room(start_time=start, end_time=start + timedelta(hours=1))


def _challenge_missing(buyer):
    return waiting_room(join_difficulty=10)


JOINS = {
    "repeat": (_repeat, 200),
    "repeat-admitted": (_admitted, 200),
    "repeat-expired": (_expired, 200),
    "repeat-closed": (_closed_place, 200),
    "sale_not_found": (_unknown_sale, 404),
    "no_waiting_room": (_no_waiting_room, 409),
    "queue_not_open": (_queue_not_open, 409),
    "sold_out": (_sold_out, 409),
    "sale_not_active": (_ended, 409),
    "challenge_failed": (_challenge_missing, 400),
}


@pytest.mark.parametrize("outcome", JOINS)
def test_every_other_join_answer_never_reaches_drf_and_is_drfs(known_buyer, buyer, outcome):
    arrange, status = JOINS[outcome]
    sale = arrange(buyer)
    places = list(QueuePlace.objects.filter(user=buyer).values_list("pk", "position", "admitted_until"))
    with never_reaching_drf():
        fast = join(known_buyer, sale.pk)
    with through_drf():
        drf = join(known_buyer, sale.pk)

    assert fast.status_code == status
    assert received(fast) == received(drf)
    if status >= 400:
        assert fast.json()["error"]["code"] == outcome
    # Nothing changed: no place taken, none renumbered.
    assert list(QueuePlace.objects.filter(user=buyer).values_list("pk", "position", "admitted_until")) == places


PLACES = {
    "waiting": (_repeat, 200),
    "pre-queue": (lambda buyer: _in_pre_queue(buyer), 200),
    "admitted": (_admitted, 200),
    "expired": (_expired, 200),
    "closed": (_closed_place, 200),
    "not_in_queue": (lambda buyer: drawn(), 404),
    "sale_not_found": (_unknown_sale, 404),
    "no_waiting_room": (_no_waiting_room, 409),
}


def _in_pre_queue(buyer):
    sale = waiting_room(start_time=timezone.now() + timedelta(minutes=5))
    queue.join(user=buyer, sale_id=sale.pk)
    return sale


@pytest.mark.parametrize("outcome", PLACES)
def test_every_place_read_never_reaches_drf_and_is_drfs(known_buyer, buyer, outcome):
    arrange, status = PLACES[outcome]
    sale = arrange(buyer)
    with never_reaching_drf():
        fast = known_buyer.get(path(sale.pk))
    with through_drf():
        drf = known_buyer.get(path(sale.pk))

    assert fast.status_code == status
    assert received(fast) == received(drf)
    if status == 200:
        assert fast.json()["data"]["status"] == {"pre-queue": "waiting"}.get(outcome, outcome)
    else:
        assert fast.json()["error"]["code"] == outcome


@pytest.mark.parametrize("group", ["user", "ip"])
def test_the_join_limits_answer_byte_for_byte_as_drf(known_buyer, buyer, group):
    limits = {"RATELIMIT_PURCHASE": "1000/h", "RATELIMIT_QUEUE_JOIN_IP": "1000/h"}
    limits["RATELIMIT_PURCHASE" if group == "user" else "RATELIMIT_QUEUE_JOIN_IP"] = "1/h"
    sale = drawn()
    frozen = time.time()  # Retry-After counts whole seconds to the window's end
    with override_settings(RATELIMIT_ENABLE=True, **limits), mock.patch("time.time", return_value=frozen):
        with never_reaching_drf():
            joined = join(known_buyer, sale.pk)
            fast = join(known_buyer, sale.pk)
        with through_drf():
            drf = join(known_buyer, sale.pk)

    assert (joined.status_code, fast.status_code) == (201, 429)
    assert received(fast) == received(drf)
    assert QueuePlace.objects.filter(user=buyer).count() == 1


def test_a_database_outage_answers_byte_for_byte_as_drf(known_buyer):
    sale = drawn()
    with mock.patch.object(queue, "place_of", side_effect=OperationalError("server closed the connection")):
        with never_reaching_drf():
            fast = known_buyer.get(path(sale.pk))
        with through_drf():
            drf = known_buyer.get(path(sale.pk))
    assert fast.status_code == 503
    assert received(fast) == received(drf)


@pytest.mark.parametrize(
    "variant",
    [
        "query-string",
        "accept-html",
        "accept-indent",
        "a-solution",
        "not-json",
        "form-body",
        "idempotency-key",
        "no-token",
        "unknown-token",
        "put",
    ],
)
def test_requests_the_fast_path_is_not_sure_of_reach_drf(known_buyer, api, variant):
    sale = drawn()
    client, extra, body = known_buyer, {}, None
    method = "POST"
    if variant == "query-string":
        extra["QUERY_STRING"] = "format=json"
    elif variant == "accept-html":
        extra["HTTP_ACCEPT"] = "text/html"
    elif variant == "accept-indent":
        extra["HTTP_ACCEPT"] = "application/json; indent=2"
    elif variant == "a-solution":
        body = '{"challenge": null, "solution": null}'
    elif variant == "not-json":
        body = "{"
    elif variant == "idempotency-key":
        extra["HTTP_IDEMPOTENCY_KEY"] = "a-key-of-its-own"
    elif variant == "no-token":
        client = api
    elif variant == "unknown-token":
        client = api
        extra["HTTP_AUTHORIZATION"] = "Token " + "0" * 40
    elif variant == "put":
        method = "PUT"
    reached = []
    dispatch = FlashSaleViewSet.dispatch

    def recorded(view, request, *args, **kwargs):
        reached.append(request.path)
        return dispatch(view, request, *args, **kwargs)

    with mock.patch.object(FlashSaleViewSet, "dispatch", autospec=True, side_effect=recorded):
        if variant == "form-body":
            response = client.post(path(sale.pk), {"challenge": ""})
        elif body is not None:
            response = client.generic(method, path(sale.pk), body, content_type="application/json", **extra)
        else:
            response = client.generic(method, path(sale.pk), **extra)
    assert reached == [path(sale.pk)], response.content
    assert response.status_code < 500


def test_a_token_not_cached_yet_is_authenticated_by_drfs_own_reading_and_cached(buyer_api, buyer):
    sale = drawn()
    key = buyer_api._credentials["HTTP_AUTHORIZATION"].split()[1]
    assert cache.get(token_cache_key(key)) is None
    with never_reaching_drf():
        answer = join(buyer_api, sale.pk)
    assert answer.status_code == 201
    assert cache.get(token_cache_key(key))["id"] == buyer.pk


def test_an_inactive_buyer_is_left_to_drf(known_buyer, buyer):
    sale = drawn()
    buyer.is_active = False
    buyer.save()  # drops the token's cached entry
    with through_drf():
        drf = join(known_buyer, sale.pk)
    answer = join(known_buyer, sale.pk)
    assert answer.status_code == 401
    assert received(answer) == received(drf)
    assert not QueuePlace.objects.filter(user=buyer).exists()


def test_a_first_join_is_one_statement_and_a_repeat_takes_no_position(known_buyer, buyer, on_postgres):
    sale = drawn()
    others = [UserFactory() for _ in range(2)]
    queue.join(user=others[0], sale_id=sale.pk)
    first, statements = statements_for(lambda: join(known_buyer, sale.pk))
    for _ in range(3):
        assert join(known_buyer, sale.pk).status_code == 200
    queue.join(user=others[1], sale_id=sale.pk)

    assert first.status_code == 201
    if on_postgres:
        assert len(statements) == 1, statements
    positions = [QueuePlace.objects.get(sale=sale, user=user).position for user in (others[0], buyer, others[1])]
    # The repeats took no number: the next buyer is right behind.
    assert positions == [1, 2, 3]


# --- a waiting place read from the cache (sales.line_cache) -------------------------------------


@pytest.fixture
def redis_only():
    if not hasattr(cache, "read_and_count"):
        pytest.skip("a place is read from the cache in the request's one Redis round trip (REDIS_URL)")


def statements_for(request):
    sent = []

    def recorded(execute, sql, params, many, context):
        sent.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(recorded):
        answer = request()
    return answer, sent


def published(sale):
    sale.refresh_from_db()
    line_cache.publish(selectors.open_waiting_rooms(timezone.now()))
    return sale


@pytest.fixture
def waiting_place(redis_only, known_buyer, buyer):
    """The buyer's place, third in a drawn line admitted through 1, the line published by the clock
    and the place read once (from the database, which caches its position)."""
    sale = drawn()
    for user in (UserFactory(), UserFactory(), buyer):
        queue.join(user=user, sale_id=sale.pk)
    FlashSale.objects.filter(pk=sale.pk).update(admitted_through=1)
    published(sale)
    first, statements = statements_for(lambda: known_buyer.get(path(sale.pk)))
    assert first.status_code == 200 and statements  # the database answered, and the position is cached
    return sale


def test_a_waiting_place_is_read_from_the_cache_without_the_database_and_is_drfs(waiting_place, known_buyer):
    sale = waiting_place
    with never_reaching_drf():
        fast, statements = statements_for(lambda: known_buyer.get(path(sale.pk)))
    with through_drf():
        drf = known_buyer.get(path(sale.pk))

    assert statements == []
    assert received(fast) == received(drf)
    assert fast.json()["data"] | {"admittedUntil": None} == {
        "saleId": sale.pk,
        "status": "waiting",
        "position": 3,
        "aheadOfYou": 1,
        "estimatedWaitSeconds": 1,
        "admittedUntil": None,
    }


def _admitted_through_the_place(sale):
    FlashSale.objects.filter(pk=sale.pk).update(admitted_through=3)
    QueuePlace.objects.filter(sale=sale, position__lte=3).update(admitted_until=timezone.now() + timedelta(minutes=2))
    published(sale)


def _edited_by_staff(sale):
    FlashSale.objects.filter(pk=sale.pk).update(admit_per_second=7)
    gate.forget(sale.pk)  # what every staff change does after it commits


def _sold_out(sale):
    FlashSale.objects.filter(pk=sale.pk).update(current_stock=0)
    published(sale)  # a closed line leaves the published ones: its entry goes


def _sold_out_by_a_purchase(sale):
    FlashSale.objects.filter(pk=sale.pk).update(current_stock=1)
    first = QueuePlace.objects.get(sale=sale, position=1)
    QueuePlace.objects.filter(pk=first.pk).update(admitted_until=timezone.now() + timedelta(minutes=2))
    published(sale)  # the line as the clock last saw it: one unit left
    with TestCase.captureOnCommitCallbacks(execute=True):  # the test's transaction never commits
        assert purchase.purchase(user=first.user, sale_id=sale.pk, quantity=1).remaining_stock == 0


def _clock_stopped(sale):
    FlashSale.objects.filter(pk=sale.pk).update(admitted_through=2)
    cache.delete(f"sales:line:{sale.pk}")  # what LINE_CACHE_SECONDS does when the clock stops writing


@pytest.mark.parametrize(
    "change, status",
    [
        (_admitted_through_the_place, "admitted"),
        (_edited_by_staff, "waiting"),
        (_sold_out, "closed"),
        (_sold_out_by_a_purchase, "closed"),
        (_clock_stopped, "waiting"),
    ],
)
def test_the_database_answers_what_the_cache_cannot_know(waiting_place, known_buyer, change, status):
    sale = waiting_place
    change(sale)
    with never_reaching_drf():
        fast, statements = statements_for(lambda: known_buyer.get(path(sale.pk)))
    with through_drf():
        drf = known_buyer.get(path(sale.pk))

    assert statements, "answered from the cache"
    assert received(fast) == received(drf)
    sale.refresh_from_db()
    data = fast.json()["data"]
    assert data["status"] == status
    assert data["aheadOfYou"] == max(0, 3 - sale.admitted_through - 1)
    assert data["estimatedWaitSeconds"] * sale.admit_per_second >= data["aheadOfYou"]


def test_a_failed_round_trip_leaves_the_read_to_the_database(waiting_place, known_buyer):
    sale = waiting_place
    with mock.patch.object(caches["default"], "read_and_count", side_effect=ConnectionError("Redis is gone")):
        answer, statements = statements_for(lambda: known_buyer.get(path(sale.pk)))
    assert answer.status_code == 200 and statements
    assert answer.json()["data"]["position"] == 3


def test_a_database_outage_while_reading_a_token_answers_as_drf(buyer_api):
    sale = drawn()
    outage = OperationalError("server closed the connection")
    with mock.patch("accounts.authentication._entry_from_database", side_effect=outage):
        answer = join(buyer_api, sale.pk)
        with through_drf():
            drf = join(buyer_api, sale.pk)
    assert answer.status_code == 503
    assert received(answer) == received(drf)
