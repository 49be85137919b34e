"""Pausing and resuming a sale: staff stop a sale from selling without ending it; buyers are told
sale_paused; pages hear of it after the commit; no purchase is ever stamped while a sale is paused."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from live import events, realtime
from sales import purchase, services
from sales.exceptions import SalesError
from sales.models import FlashSale, Purchase
from tests.factories import SaleFactory, UserFactory
from tests.invariants import assert_invariant

pytestmark = pytest.mark.django_db

PURCHASE = "/api/v1/flashsales/purchase"
SALES = "/api/v1/flashsales/"


def buy(client, sale, quantity=1):
    return client.post(PURCHASE, {"saleId": sale.pk, "quantity": quantity}, format="json")


def test_staff_pause_a_live_sale_and_its_status_and_version_stay(
    staff_api, monkeypatch, django_capture_on_commit_callbacks
):
    announced = []
    monkeypatch.setattr(events, "sale_changed", lambda **kwargs: announced.append(kwargs))
    sale = SaleFactory(original_stock=10)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_api.post(f"{SALES}{sale.pk}/pause")

    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["paused"], data["status"], data["version"], data["currentStock"]) == (True, "active", 1, 10)
    fresh = FlashSale.objects.get(pk=sale.pk)
    assert (fresh.paused, fresh.version, fresh.end_time) == (True, sale.version, sale.end_time)
    assert announced == [{"sale_id": sale.pk}]


def test_a_purchase_from_a_paused_sale_is_409_and_changes_nothing(staff_api, buyer_api):
    sale = SaleFactory(original_stock=10)
    staff_api.post(f"{SALES}{sale.pk}/pause")

    response = buy(buyer_api, sale)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "sale_paused"
    assert response.json()["error"]["details"] == {"saleId": sale.pk}
    fresh = FlashSale.objects.get(pk=sale.pk)
    assert (fresh.current_stock, fresh.stock_version) == (10, 1)
    assert not Purchase.objects.exists()


def test_the_rest_of_the_herd_is_refused_from_the_gate_without_the_database(staff_api, buyer):
    sale = SaleFactory(original_stock=10)
    services.pause_sale(sale_id=sale.pk)
    with pytest.raises(SalesError):
        purchase.purchase(user=buyer, sale_id=sale.pk, quantity=1)  # the database refuses, the gate remembers

    with CaptureQueriesContext(connection) as captured, pytest.raises(SalesError) as refused:
        purchase.purchase(user=buyer, sale_id=sale.pk, quantity=1)

    assert refused.value.code == "sale_paused"
    assert captured.captured_queries == []


def test_a_resumed_sale_sells_again_at_once_even_after_the_gate_remembered_the_pause(
    staff_api, buyer_api, django_capture_on_commit_callbacks
):
    sale = SaleFactory(original_stock=10)
    staff_api.post(f"{SALES}{sale.pk}/pause")
    assert buy(buyer_api, sale).status_code == 409
    assert buy(buyer_api, sale).status_code == 409

    with django_capture_on_commit_callbacks(execute=True):  # the gate forgets after the commit
        resumed = staff_api.post(f"{SALES}{sale.pk}/resume")
    response = buy(buyer_api, sale, 2)

    assert resumed.status_code == 200 and resumed.json()["data"]["paused"] is False
    assert response.status_code == 201
    fresh = FlashSale.objects.get(pk=sale.pk)
    assert (fresh.paused, fresh.current_stock, fresh.version) == (False, 8, sale.version)


def test_pausing_twice_or_resuming_a_running_sale_changes_nothing(
    staff_api, monkeypatch, django_capture_on_commit_callbacks
):
    announced = []
    monkeypatch.setattr(events, "sale_changed", lambda **kwargs: announced.append(kwargs))
    sale = SaleFactory()

    with django_capture_on_commit_callbacks(execute=True):
        answers = [
            staff_api.post(f"{SALES}{sale.pk}/resume"),
            staff_api.post(f"{SALES}{sale.pk}/pause"),
            staff_api.post(f"{SALES}{sale.pk}/pause"),
        ]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert [answer.json()["data"]["paused"] for answer in answers] == [False, True, True]
    assert announced == [{"sale_id": sale.pk}]  # only the one real change is pushed


def test_a_pending_sale_can_be_paused_and_does_not_sell_when_it_starts(staff_api, buyer_api):
    start = timezone.now() + timedelta(hours=1)
    sale = SaleFactory(start_time=start, end_time=start + timedelta(hours=1))
    assert staff_api.post(f"{SALES}{sale.pk}/pause").status_code == 200
    FlashSale.objects.filter(pk=sale.pk).update(start_time=timezone.now() - timedelta(seconds=1))

    response = buy(buyer_api, sale)

    assert response.json()["error"]["code"] == "sale_paused"
    assert not Purchase.objects.exists()


def test_an_ended_sale_cannot_be_paused(staff_api):
    sale = SaleFactory(start_time=timezone.now() - timedelta(hours=2), end_time=timezone.now() - timedelta(hours=1))

    response = staff_api.post(f"{SALES}{sale.pk}/pause")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "sale_not_active"
    assert FlashSale.objects.get(pk=sale.pk).paused is False


def test_only_staff_pause_and_resume(buyer_api):
    sale = SaleFactory()

    answers = [buyer_api.post(f"{SALES}{sale.pk}/pause"), buyer_api.post(f"{SALES}{sale.pk}/resume")]

    assert [answer.status_code for answer in answers] == [403, 403]
    assert FlashSale.objects.get(pk=sale.pk).paused is False


def test_a_pause_does_not_make_an_open_edit_stale(staff_api):
    sale = SaleFactory(name="Old")
    read_version = sale.version
    staff_api.post(f"{SALES}{sale.pk}/pause")

    response = staff_api.patch(f"{SALES}{sale.pk}", {"version": read_version, "name": "New"}, format="json")

    assert response.status_code == 200
    fresh = FlashSale.objects.get(pk=sale.pk)
    assert (fresh.name, fresh.paused) == ("New", True)


def test_the_snapshot_pages_get_says_paused():
    sale = SaleFactory()
    services.pause_sale(sale_id=sale.pk)

    snapshot = realtime.snapshot_message(FlashSale.objects.get(pk=sale.pk))

    assert (snapshot["paused"], snapshot["status"]) == (True, "active")


def test_the_admin_pauses_and_resumes_a_sale_from_its_page_and_from_the_list(staff):
    sale, other = SaleFactory(name="One"), SaleFactory(name="Two")
    browser = Client()
    browser.force_login(staff)
    change = reverse("admin:sales_flashsale_change", args=[sale.pk])

    page = browser.get(change).content.decode()
    paused = browser.post(reverse("admin:sales_flashsale_pause", args=[sale.pk]), follow=True)
    assert "data-pause-sale" in page
    assert paused.redirect_chain == [(change, 302)]
    assert "data-resume-sale" in paused.content.decode()
    assert FlashSale.objects.get(pk=sale.pk).paused is True

    browser.post(
        reverse("admin:sales_flashsale_changelist"),
        {"action": "resume_now", "_selected_action": [sale.pk, other.pk]},
    )
    assert list(FlashSale.objects.order_by("pk").values_list("paused", flat=True)) == [False, False]
    browser.post(reverse("admin:sales_flashsale_changelist"), {"action": "pause_now", "_selected_action": [other.pk]})
    assert list(FlashSale.objects.order_by("pk").values_list("paused", flat=True)) == [False, True]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_herd_across_a_pause_stamps_no_purchase_while_the_sale_is_paused(settings):
    settings.MAX_UNITS_PER_USER = 1_000
    sale = SaleFactory(original_stock=100_000)
    buyers = [UserFactory() for _ in range(12)]
    stop = threading.Event()
    progress = threading.Condition()
    bought: list[int] = []
    refusals: list[str] = []

    def herd(buyer):
        try:
            while not stop.is_set():
                try:
                    result = purchase.purchase(user=buyer, sale_id=sale.pk, quantity=1)
                except SalesError as refused:
                    with progress:
                        refusals.append(refused.code)
                        progress.notify_all()
                else:
                    with progress:
                        bought.append(result.purchase_id)
                        progress.notify_all()
        finally:
            connection.close()

    def wait_for(condition):
        with progress:
            assert progress.wait_for(condition, timeout=30)

    threads = [threading.Thread(target=herd, args=(buyer,)) for buyer in buyers]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(bought) >= 30)  # the herd is buying
        services.pause_sale(sale_id=sale.pk)
        paused_at = timezone.now()
        wait_for(lambda: len(refusals) >= 50)  # the herd met the pause
        resumed_at = timezone.now()
        sold_before_resume = len(bought)
        services.resume_sale(sale_id=sale.pk)
        wait_for(lambda: len(bought) >= sold_before_resume + 30)  # buying again
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    stamps = list(Purchase.objects.filter(sale=sale).values_list("created_at", flat=True))
    assert not [stamp for stamp in stamps if paused_at <= stamp < resumed_at]
    assert [stamp for stamp in stamps if stamp < paused_at] and [stamp for stamp in stamps if stamp >= resumed_at]
    assert set(refusals) == {"sale_paused"}
    sale_now, sold = assert_invariant(sale.pk, cap=1_000)
    assert sold == len(stamps) and not sale_now.paused


# --- what open pages hear ---------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("poll_ms", [0, 20], ids=["pushed after the commit", "read by the database feed"])
async def test_open_pages_hear_of_a_pause_and_a_resume_in_a_snapshot(settings, poll_ms):
    from asgiref.sync import sync_to_async

    from tests.test_realtime import close, drain, of_type, open_socket

    settings.REALTIME_POLL_MS = poll_ms
    sale = await sync_to_async(SaleFactory)(original_stock=10)
    socket = await open_socket(f"/ws/sales/{sale.pk}/")
    first = await socket.receive_json_from()
    if poll_ms:
        # The feed's first read restates the status: from then on it compares with what it read.
        while (await socket.receive_json_from(timeout=10))["type"] != "status":
            pass

    await sync_to_async(services.pause_sale)(sale_id=sale.pk)
    paused = of_type(await drain(socket), "snapshot")
    await sync_to_async(services.resume_sale)(sale_id=sale.pk)
    resumed = of_type(await drain(socket), "snapshot")
    await close(socket)

    assert first["paused"] is False
    assert [(s["paused"], s["status"], s["currentStock"]) for s in paused] == [(True, "active", 10)]
    assert [(s["paused"], s["status"]) for s in resumed] == [(False, "active")]


def test_a_paused_sales_refusal_is_answered_by_the_fast_path_as_by_the_full_path(staff_api, buyer_api):
    from unittest import mock

    from sales.api import PurchaseView

    sale = SaleFactory(original_stock=10)
    staff_api.post(f"{SALES}{sale.pk}/pause")
    first = buy(buyer_api, sale)  # the full path: the database refuses, the gate remembers the pause

    with mock.patch.object(PurchaseView, "dispatch", side_effect=AssertionError("reached DRF")):
        second = buy(buyer_api, sale)

    assert (second.status_code, second.json()) == (first.status_code, first.json())
    assert first.json()["error"]["code"] == "sale_paused"
    assert not Purchase.objects.exists()
