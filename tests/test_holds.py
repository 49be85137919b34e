"""Holds, then pay: a sale with holdSeconds > 0 holds a purchase's units until it is confirmed,
released or expired; holdSeconds 0 keeps a purchase final at once. On both backends."""

from collections import Counter
from datetime import timedelta

import pytest
from django.db.models import F, Sum
from django.utils import timezone

from sales.models import FlashSale, Purchase, WaitlistEntry
from tests.factories import PurchaseFactory, SaleFactory, TokenFactory
from tests.invariants import assert_invariant

pytestmark = pytest.mark.django_db

PURCHASE = "/api/v1/flashsales/purchase"
SALES = "/api/v1/flashsales/"
LEADERBOARD = "/api/v1/leaderboard"


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def buy(api, sale, quantity=1, **headers):
    return api.post(PURCHASE, {"saleId": sale.pk, "quantity": quantity}, format="json", headers=headers)


# --- step 1: holdSeconds and the held purchase ---------------------------------------------


def test_staff_create_and_edit_a_sales_hold(staff_api):
    start = timezone.now() + timedelta(hours=1)
    created = staff_api.post(
        SALES,
        {"name": "Held", "startTime": iso(start), "endTime": iso(start + timedelta(hours=1)), "holdSeconds": 900},
        format="json",
    )
    assert created.status_code == 201, created.json()
    sale_id = created.json()["data"]["saleId"]
    assert created.json()["data"]["holdSeconds"] == 900

    edited = staff_api.patch(f"{SALES}{sale_id}", {"version": 1, "holdSeconds": 0}, format="json")

    assert edited.status_code == 200, edited.json()
    assert edited.json()["data"]["holdSeconds"] == 0
    assert FlashSale.objects.values_list("hold_seconds", "version").get(pk=sale_id) == (0, 2)


def test_a_negative_hold_is_refused_and_changes_nothing(staff_api):
    sale = SaleFactory(hold_seconds=60)

    response = staff_api.patch(f"{SALES}{sale.pk}", {"version": 1, "holdSeconds": -1}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "holdSeconds" in response.json()["error"]["details"]
    assert FlashSale.objects.values_list("hold_seconds", "version").get(pk=sale.pk) == (60, 1)


def test_a_purchase_of_a_sale_without_holds_is_confirmed_at_once(buyer_api):
    sale = SaleFactory(original_stock=5)

    response = buy(buyer_api, sale, 2)

    assert response.status_code == 201
    data = response.json()["data"]
    assert (data["status"], data["expiresAt"], data["remainingStock"]) == ("confirmed", None, 3)
    order = Purchase.objects.get()
    assert (order.status, order.expires_at, order.confirmed_at) == ("confirmed", None, None)
    assert_invariant(sale.pk)


def test_a_purchase_of_a_sale_with_holds_is_held_until_the_database_clock_plus_the_hold(buyer_api):
    sale = SaleFactory(original_stock=5, hold_seconds=600)

    response = buy(buyer_api, sale, 2)

    assert response.status_code == 201
    data = response.json()["data"]
    order = Purchase.objects.get()
    assert (order.status, order.quantity) == ("held", 2)
    # The hold runs from the same clock reading that stamps the purchase.
    assert order.expires_at == order.created_at + timedelta(seconds=600)
    assert data["status"] == "held"
    assert data["expiresAt"] == iso(order.expires_at)
    assert data["timestamp"] == iso(order.created_at)
    # The units leave the stock at once.
    assert data["remainingStock"] == 3
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 3
    assert_invariant(sale.pk)


def test_held_units_count_against_the_buyers_limit_and_released_ones_do_not(buyer_api, buyer):
    sale = SaleFactory(original_stock=20, max_per_buyer=3, hold_seconds=600)
    PurchaseFactory(sale=sale, user=buyer, quantity=2, status="held", expires_at=timezone.now() + timedelta(minutes=5))
    PurchaseFactory(sale=sale, user=buyer, quantity=3, status="released", released_at=timezone.now())
    PurchaseFactory(sale=sale, user=buyer, quantity=3, status="expired", released_at=timezone.now())
    FlashSale.objects.filter(pk=sale.pk).update(current_stock=18)

    refused = buy(buyer_api, sale, 2)
    allowed = buy(buyer_api, sale, 1)

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "user_limit_reached"
    assert refused.json()["error"]["details"]["held"] == 2
    assert allowed.status_code == 201
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 17
    assert Purchase.objects.filter(sale=sale, status="held").aggregate(units=Sum("quantity"))["units"] == 3


def test_the_leaderboard_lists_confirmed_purchases_only(api):
    sale = SaleFactory(hold_seconds=600)
    confirmed = PurchaseFactory(sale=sale, quantity=1)
    PurchaseFactory(sale=sale, quantity=2, status="held", expires_at=timezone.now() + timedelta(minutes=5))
    PurchaseFactory(sale=sale, quantity=3, status="released", released_at=timezone.now())

    body = api.get(LEADERBOARD, {"saleId": sale.pk}).json()

    assert [row["purchaseId"] for row in body["data"]["purchases"]] == [confirmed.pk]
    assert body["count"] == 1


# --- step 2: confirm and release ------------------------------------------------------------


def confirm_path(order) -> str:
    return f"/api/v1/purchases/{order.pk}/confirm"


def release_path(order) -> str:
    return f"/api/v1/purchases/{order.pk}/release"


def held(buyer, sale, quantity=1, seconds=600) -> Purchase:
    """A hold as the purchase rule leaves it: its units out of the sale's stock."""
    FlashSale.objects.filter(pk=sale.pk).update(current_stock=sale.current_stock - quantity)
    sale.refresh_from_db()
    return PurchaseFactory(
        sale=sale, user=buyer, quantity=quantity, status="held", expires_at=timezone.now() + timedelta(seconds=seconds)
    )


def test_a_buyer_confirms_a_hold_and_a_repeat_answers_the_same(buyer_api, buyer, api):
    sale = SaleFactory(original_stock=5, hold_seconds=600)
    order = Purchase.objects.get(pk=buy(buyer_api, sale, 2).json()["data"]["purchaseId"])

    first = buyer_api.post(confirm_path(order))
    again = buyer_api.post(confirm_path(order))

    assert first.status_code == again.status_code == 200, first.json()
    assert first.json()["data"] == again.json()["data"]
    order.refresh_from_db()
    assert first.json()["data"]["status"] == order.status == "confirmed"
    assert first.json()["data"]["confirmedAt"] == iso(order.confirmed_at)
    assert order.confirmed_at < order.expires_at
    # The units stay sold, and the purchase is on the leaderboard now.
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 3
    board = api.get(LEADERBOARD, {"saleId": sale.pk}).json()
    assert [row["purchaseId"] for row in board["data"]["purchases"]] == [order.pk]
    assert_invariant(sale.pk)


def test_staff_confirm_a_buyers_hold(staff_api, buyer):
    sale = SaleFactory(original_stock=5, hold_seconds=600)
    order = held(buyer, sale)

    response = staff_api.post(confirm_path(order))

    assert response.status_code == 200
    assert Purchase.objects.get(pk=order.pk).status == "confirmed"


def test_a_confirm_after_the_hold_expired_is_refused_and_changes_nothing(buyer_api, buyer):
    sale = SaleFactory(original_stock=5, hold_seconds=60)
    order = held(buyer, sale, seconds=-1)

    response = buyer_api.post(confirm_path(order))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "hold_expired"
    order.refresh_from_db()
    assert (order.status, order.confirmed_at) == ("held", None)
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 4


def test_someone_elses_purchase_is_not_found_for_confirm_and_release(buyer_api):
    sale = SaleFactory(original_stock=5, hold_seconds=600)
    theirs = held(TokenFactory().user, sale)

    confirmed = buyer_api.post(confirm_path(theirs))
    released = buyer_api.post(release_path(theirs))
    missing = buyer_api.post("/api/v1/purchases/999999999/confirm")

    for response in (confirmed, released, missing):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "purchase_not_found"
    assert confirmed.json()["error"]["message"] == missing.json()["error"]["message"]
    assert Purchase.objects.get(pk=theirs.pk).status == "held"
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 4


def test_a_release_returns_the_units_once_and_a_repeat_answers_the_same(buyer_api, buyer):
    sale = SaleFactory(original_stock=5, hold_seconds=600)
    order = held(buyer, sale, quantity=3)
    version = FlashSale.objects.get(pk=sale.pk).stock_version

    first = buyer_api.post(release_path(order))
    again = buyer_api.post(release_path(order))

    assert first.status_code == again.status_code == 200, first.json()
    assert first.json()["data"] == again.json()["data"]
    assert first.json()["data"]["status"] == "released"
    stored = FlashSale.objects.get(pk=sale.pk)
    assert (stored.current_stock, stored.stock_version) == (5, version + 1)
    assert Purchase.objects.get(pk=order.pk).status == "released"
    assert_invariant(sale.pk)


def test_a_released_hold_cannot_be_confirmed_nor_a_confirmed_purchase_released(buyer_api, buyer):
    sale = SaleFactory(original_stock=5, hold_seconds=600)
    released, final = held(buyer, sale), held(buyer, sale)
    assert buyer_api.post(release_path(released)).status_code == 200
    assert buyer_api.post(confirm_path(final)).status_code == 200

    confirm_released = buyer_api.post(confirm_path(released))
    release_confirmed = buyer_api.post(release_path(final))

    assert (confirm_released.status_code, confirm_released.json()["error"]["code"]) == (409, "hold_released")
    assert (release_confirmed.status_code, release_confirmed.json()["error"]["code"]) == (409, "hold_confirmed")
    assert dict(Purchase.objects.values_list("pk", "status")) == {released.pk: "released", final.pk: "confirmed"}
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 4
    assert_invariant(sale.pk)


def test_a_release_frees_the_buyers_limit_and_reopens_a_sold_out_sale(
    buyer_api, buyer, django_capture_on_commit_callbacks
):
    sale = SaleFactory(original_stock=2, max_per_buyer=2, hold_seconds=600)
    order = Purchase.objects.get(pk=buy(buyer_api, sale, 2).json()["data"]["purchaseId"])
    assert buy(buyer_api, sale, 1).json()["error"]["code"] == "sold_out"  # remembered by the gate

    with django_capture_on_commit_callbacks(execute=True):
        assert buyer_api.post(release_path(order)).status_code == 200
    again = buy(buyer_api, sale, 2)

    assert again.status_code == 201, again.json()
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 0
    assert_invariant(sale.pk)


def test_confirm_and_release_replay_their_answer_for_an_idempotency_key(buyer_api, buyer):
    sale = SaleFactory(original_stock=5, hold_seconds=600)
    order, other = held(buyer, sale), held(buyer, sale)

    first = buyer_api.post(release_path(order), headers={"Idempotency-Key": "release-1"})
    replay = buyer_api.post(release_path(order), headers={"Idempotency-Key": "release-1"})
    # The same key on another purchase is another request.
    reused = buyer_api.post(release_path(other), headers={"Idempotency-Key": "release-1"})
    confirmed = buyer_api.post(confirm_path(other), headers={"Idempotency-Key": "confirm-1"})
    confirm_replay = buyer_api.post(confirm_path(other), headers={"Idempotency-Key": "confirm-1"})

    assert (first.status_code, replay.status_code) == (200, 200)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert (reused.status_code, reused.json()["error"]["code"]) == (422, "idempotency_key_reused")
    assert confirm_replay.headers["Idempotent-Replayed"] == "true"
    assert confirm_replay.json() == confirmed.json()
    assert dict(Purchase.objects.values_list("pk", "status")) == {order.pk: "released", other.pk: "confirmed"}
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 4
    assert_invariant(sale.pk)


def test_a_malformed_idempotency_key_on_confirm_is_a_documented_400_and_confirms_nothing(buyer_api, buyer, api):
    sale = SaleFactory(original_stock=5, hold_seconds=600)
    order = held(buyer, sale)

    response = buyer_api.post(confirm_path(order), headers={"Idempotency-Key": "tab\tinside"})
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    assert (response.status_code, response.json()["error"]["code"]) == (400, "validation_error")
    assert "Idempotency-Key" in response.json()["error"]["details"]
    for action in ("confirm", "release"):
        assert "400" in schema["paths"][f"/api/v1/purchases/{{purchase_id}}/{action}"]["post"]["responses"]
    assert Purchase.objects.get(pk=order.pk).status == "held"


# --- step 3: expiry by the sale clock, the audit, and the races ---------------------------


def test_the_sale_clock_returns_expired_holds_pushes_the_stock_and_reopens_the_gate(
    buyer_api, buyer, django_capture_on_commit_callbacks
):
    from live.management.commands.runsaleclock import Command as SaleClock

    sale = SaleFactory(original_stock=3, hold_seconds=60)
    late, on_time = held(buyer, sale, quantity=2, seconds=-1), held(buyer, sale, quantity=1)
    assert buy(buyer_api, sale, 1).json()["error"]["code"] == "sold_out"  # remembered by the gate
    version = FlashSale.objects.get(pk=sale.pk).stock_version

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        SaleClock().tick(timezone.now())

    late.refresh_from_db()
    on_time.refresh_from_db()
    assert (late.status, on_time.status) == ("expired", "held")
    assert late.released_at is not None and late.released_at >= late.expires_at
    stored = FlashSale.objects.get(pk=sale.pk)
    assert (stored.current_stock, stored.stock_version) == (2, version + 1)
    assert callbacks  # the gate is forgotten and the stock pushed after the commit
    assert buy(buyer_api, sale, 2).status_code == 201
    assert_invariant(sale.pk)


def test_expiring_returns_each_hold_once_whatever_the_number_of_ticks(buyer):
    from sales import holds

    sale = SaleFactory(original_stock=10, hold_seconds=60)
    for quantity in (1, 2, 3):
        held(buyer, sale, quantity=quantity, seconds=-1)

    first, second = holds.expire_holds(), holds.expire_holds()

    assert [(returned.sale_id, returned.units, returned.current_stock) for returned in first] == [(sale.pk, 6, 10)]
    assert second == []
    assert set(Purchase.objects.values_list("status", flat=True)) == {"expired"}
    assert_invariant(sale.pk)


def test_the_audit_reports_a_confirm_after_the_hold_expired(buyer):
    from sales.audit import hold_violations, stock_violations

    sale = SaleFactory(original_stock=5, hold_seconds=60)
    order = held(buyer, sale, quantity=1, seconds=-10)
    Purchase.objects.filter(pk=order.pk).update(status="confirmed", confirmed_at=timezone.now())
    returned = held(buyer, sale, quantity=2, seconds=-10)
    # Both confirmed late and returned: units missing from the invariant.
    Purchase.objects.filter(pk=returned.pk).update(status="expired", released_at=timezone.now())

    found = hold_violations()

    assert len(found) == 1
    assert f"purchase {order.pk} of sale {sale.pk} was confirmed at" in found[0]
    assert "after its hold expired" in found[0]
    assert any("original 5 - current 2 = 3, but its purchases hold 1 units" in line for line in stock_violations())


def _race(first, second):
    """Run `first` and `second` in two threads released together; their results (or exceptions)."""
    import threading

    from django.db import connection

    barrier = threading.Barrier(2)
    results: list = [None, None]

    def run(index, work):
        try:
            barrier.wait()
            results[index] = work()
        except Exception as error:  # the loser's refusal is a result too
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index, work)) for index, work in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _hold_at_the_database_clock(user, sale, *, offset_ms: int) -> Purchase:
    """A hold expiring `offset_ms` after the database's clock now, its unit out of the stock."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp() + make_interval(secs => %s)", [offset_ms / 1000])
        (expires_at,) = cursor.fetchone()
    FlashSale.objects.filter(pk=sale.pk).update(current_stock=F("current_stock") - 1)
    return PurchaseFactory(sale=sale, user=user, quantity=1, status="held", expires_at=expires_at)


RACES = 40


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_confirm_and_expiry_racing_never_both_confirm_and_return_the_units():
    from sales import holds
    from sales.exceptions import HoldExpired

    sale = SaleFactory(original_stock=RACES, hold_seconds=60)
    buyer = TokenFactory().user
    outcomes = Counter()
    for attempt in range(RACES):
        # Around the deadline: some confirms come first, some the expiry.
        order = _hold_at_the_database_clock(buyer, sale, offset_ms=5 * (attempt % 10))
        confirmed, returned = _race(
            lambda order=order: holds.confirm(user=buyer, purchase_id=order.pk), holds.expire_holds
        )
        order.refresh_from_db()
        if isinstance(confirmed, Purchase):
            assert (order.status, returned) == ("confirmed", [])
            assert order.confirmed_at < order.expires_at
        else:
            assert isinstance(confirmed, HoldExpired), confirmed
            # Expired by the clock now or at its next tick: the unit comes back exactly once.
            holds.expire_holds()
            order.refresh_from_db()
            assert order.status == "expired"
        outcomes[order.status] += 1
        assert_invariant(sale.pk, cap=RACES)
    stored = FlashSale.objects.get(pk=sale.pk)
    assert RACES - stored.current_stock == outcomes["confirmed"]
    assert sum(outcomes.values()) == RACES


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_release_and_expiry_racing_return_the_units_once():
    from sales import holds

    sale = SaleFactory(original_stock=RACES, hold_seconds=60)
    buyer = TokenFactory().user
    for attempt in range(RACES):
        order = _hold_at_the_database_clock(buyer, sale, offset_ms=-(attempt % 2))
        released, returned = _race(
            lambda order=order: holds.release(user=buyer, purchase_id=order.pk), holds.expire_holds
        )
        order.refresh_from_db()
        assert order.status in {"released", "expired"}
        # The winner returned the unit; the loser returned nothing.
        assert (order.status == "released") == isinstance(released, Purchase)
        assert (order.status == "expired") == (returned != [])
        assert_invariant(sale.pk, cap=RACES)
    assert FlashSale.objects.get(pk=sale.pk).current_stock == RACES


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_herd_of_holds_a_third_confirmed_a_third_released_a_third_expired_and_the_waitlist_served(settings):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection
    from rest_framework.test import APIClient

    from sales import holds

    settings.RATELIMIT_ENABLE = False
    buyers = 30
    sale = SaleFactory(original_stock=buyers, hold_seconds=600)
    tokens = [TokenFactory().key for _ in range(buyers)]

    def client(token):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return api

    def purchase(token):
        try:
            response = buy(client(token), sale, 1)
            assert response.status_code == 201, response.json()
            return response.json()["data"]["purchaseId"]
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = list(pool.map(purchase, tokens))
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 0
    confirming, releasing, expiring = ids[0::3], ids[1::3], ids[2::3]
    waiters = [TokenFactory().key for _ in range(5)]
    for token in waiters:
        assert client(token).post(waitlist_path(sale)).status_code == 201
    # The last third's buyers walk away: their holds ran out a second ago.
    Purchase.objects.filter(pk__in=expiring).update(expires_at=timezone.now() - timedelta(seconds=1))

    def act(pair):
        token, purchase_id = pair
        path = confirm_path if purchase_id in confirming else release_path
        try:
            return client(token).post(path(Purchase(pk=purchase_id))).status_code
        finally:
            connection.close()

    done = threading.Event()

    def clock():
        try:
            while not done.is_set():
                holds.expire_holds()
        finally:
            connection.close()

    ticking = threading.Thread(target=clock)
    ticking.start()
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(act, [(t, i) for t, i in zip(tokens, ids, strict=True) if i not in expiring]))
    done.set()
    ticking.join()
    holds.expire_holds()

    assert statuses == [200] * (len(confirming) + len(releasing))
    assert dict(Counter(Purchase.objects.values_list("status", flat=True))) == {
        "confirmed": len(confirming),
        "released": len(releasing),
        "expired": len(expiring),
        "held": len(waiters),
    }
    assert set(Purchase.objects.filter(status="confirmed").values_list("pk", flat=True)) == set(confirming)
    # The waitlist was served in order: each place's hold is newer than the one before it.
    places = list(WaitlistEntry.objects.order_by("id").values_list("state", "purchase_id", "user__auth_token__key"))
    assert [state for state, _, _ in places] == ["offered"] * len(waiters)
    assert [key for _, _, key in places] == waiters
    offers = [purchase_id for _, purchase_id, _ in places]
    assert offers == sorted(offers)
    stored, sold = assert_invariant(sale.pk)
    # Every unit is confirmed, held by a waiter, or back in stock.
    assert sold == len(confirming) + len(waiters)
    assert stored.current_stock == buyers - len(confirming) - len(waiters)
    from sales.audit import run_audit

    assert run_audit().violations == []


# --- step 4: the buyer's purchases ----------------------------------------------------------


def test_a_buyer_lists_their_own_purchases_with_status_newest_first_paged(buyer_api, buyer):
    sale = SaleFactory(original_stock=20, hold_seconds=600)
    now = timezone.now()
    mine = [
        PurchaseFactory(sale=sale, user=buyer, created_at=now - timedelta(minutes=4)),
        PurchaseFactory(sale=sale, user=buyer, created_at=now - timedelta(minutes=3), status="expired", expires_at=now),
        PurchaseFactory(
            sale=sale, user=buyer, created_at=now - timedelta(minutes=2), status="released", expires_at=now
        ),
        PurchaseFactory(
            sale=sale,
            user=buyer,
            created_at=now - timedelta(minutes=1),
            status="held",
            expires_at=now + timedelta(minutes=9),
        ),
    ]
    PurchaseFactory(sale=sale, created_at=now)  # someone else's

    first = buyer_api.get("/api/v1/purchases", {"limit": 3}).json()
    second = buyer_api.get("/api/v1/purchases/", {"limit": 3, "page": 2}).json()

    assert (first["count"], first["page"], first["limit"]) == (4, 1, 3)
    rows = first["data"]["purchases"] + second["data"]["purchases"]
    assert [row["purchaseId"] for row in rows] == [order.pk for order in reversed(mine)]
    assert [row["status"] for row in rows] == ["held", "released", "expired", "confirmed"]
    assert rows[0]["expiresAt"] == iso(mine[3].expires_at)
    assert rows[0]["timestamp"] == iso(mine[3].created_at)


def test_the_purchases_list_needs_a_token_and_refuses_a_bad_page(api, buyer_api):
    assert api.get("/api/v1/purchases").json()["error"]["code"] == "not_authenticated"
    bad = buyer_api.get("/api/v1/purchases", {"page": 0})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "validation_error")


# --- step 5: the waitlist -------------------------------------------------------------------


def waitlist_path(sale) -> str:
    return f"/api/v1/flashsales/{sale.pk}/waitlist"


def test_a_buyer_takes_a_place_in_the_waitlist_once(buyer_api, buyer):
    sale = SaleFactory(original_stock=1, current_stock=0, hold_seconds=60)
    WaitlistEntry.objects.create(sale=sale, user=TokenFactory().user)

    first = buyer_api.post(waitlist_path(sale))
    again = buyer_api.post(waitlist_path(sale))

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["data"] == again.json()["data"]
    assert (first.json()["data"]["state"], first.json()["data"]["position"]) == ("waiting", 2)
    assert WaitlistEntry.objects.filter(sale=sale, user=buyer).count() == 1


def test_the_waitlist_of_an_ended_sale_takes_no_one(buyer_api):
    now = timezone.now()
    sale = SaleFactory(start_time=now - timedelta(hours=2), end_time=now - timedelta(hours=1), hold_seconds=60)

    response = buyer_api.post(waitlist_path(sale))
    missing = buyer_api.post("/api/v1/flashsales/999999/waitlist")

    assert (response.status_code, response.json()["error"]["code"]) == (409, "sale_not_active")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "sale_not_found")
    assert not WaitlistEntry.objects.exists()


def test_returned_units_are_offered_as_holds_in_waitlist_order_within_the_buyers_limit(
    buyer, django_capture_on_commit_callbacks
):
    from sales import holds

    sale = SaleFactory(original_stock=4, max_per_buyer=1, hold_seconds=60)
    held(buyer, sale, quantity=1)
    held(buyer, sale, quantity=2, seconds=-1)  # runs out: two units come back
    at_limit, first, second, third = (TokenFactory().user for _ in range(4))
    held(at_limit, sale, quantity=1, seconds=600)
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 0
    for user in (at_limit, first, second, third):
        WaitlistEntry.objects.create(sale=sale, user=user)

    with django_capture_on_commit_callbacks(execute=True):
        holds.expire_holds()

    places = {entry.user_id: entry for entry in WaitlistEntry.objects.select_related("purchase")}
    assert places[at_limit.pk].state == "skipped"
    assert (places[first.pk].state, places[second.pk].state, places[third.pk].state) == (
        "offered",
        "offered",
        "waiting",
    )
    for user in (first, second):
        offer = places[user.pk].purchase
        assert (offer.user_id, offer.status, offer.quantity) == (user.pk, "held", 1)
        assert offer.expires_at == offer.created_at + timedelta(seconds=60)
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 0
    assert_invariant(sale.pk, cap=1)
