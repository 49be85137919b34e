"""The admin under a real purchase herd on PostgreSQL: real threads, real transactions, no mocked race."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.urls import reverse

from sales import purchase, services
from sales.admin_forms import STALE_EDIT_MESSAGE
from sales.exceptions import SalesError
from sales.models import FlashSale, Purchase
from tests.admin_pages import form_data
from tests.factories import SaleFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def units_bought(sale_id: int) -> int:
    return Purchase.objects.filter(sale_id=sale_id).aggregate(units=Sum("quantity"))["units"] or 0


def staff_browser() -> Client:
    browser = Client()
    browser.force_login(UserFactory(is_staff=True))
    return browser


def test_admin_restocks_and_edits_during_a_purchase_herd_keep_every_purchase():
    sale = SaleFactory(name="Herd", original_stock=40)
    buyers = [UserFactory() for _ in range(50)]
    rng = random.Random(5)
    attempts = [(buyers[i % len(buyers)], rng.randint(1, 2)) for i in range(200)]
    start = threading.Barrier(9)
    change_url = reverse("admin:sales_flashsale_change", args=[sale.pk])
    add_units_url = reverse("admin:sales_flashsale_add_units", args=[sale.pk])

    def buy_some(share):
        start.wait(timeout=30)
        outcomes = []
        try:
            for user, quantity in share:
                try:
                    purchase.purchase(user=user, sale_id=sale.pk, quantity=quantity)
                    outcomes.append("bought")
                except SalesError as refused:
                    outcomes.append(refused.code)
        finally:
            connection.close()
        return outcomes

    def edit_name(browser, name):
        data = form_data(browser.get(change_url).content.decode(), "flashsale_form")
        data["name"] = name
        # Followed, so a refusal shows its reason whether the form (200) or the save (302) refused.
        response = browser.post(change_url, data, follow=True)
        # Only this thread writes names, so the name tells whether this edit was saved.
        saved = FlashSale.objects.filter(pk=sale.pk, name=name).exists()
        return response.status_code, saved, STALE_EDIT_MESSAGE in response.content.decode()

    def run_the_admin():
        browser = staff_browser()
        start.wait(timeout=30)
        restocks, edits = [], []
        try:
            for round_ in range(5):
                restocks.append(browser.post(add_units_url, {"units": "10"}).status_code)
                edits.append(edit_name(browser, f"Herd, round {round_}"))
        finally:
            connection.close()
        return restocks, edits

    shares = [attempts[i::8] for i in range(8)]
    with ThreadPoolExecutor(max_workers=9) as pool:
        admin = pool.submit(run_the_admin)
        buyers_done = list(pool.map(buy_some, shares))
        restocks, edits = admin.result(timeout=120)
    # With the herd over nothing bumps the version between reading the form and saving it: an
    # admin that refused every edit (which the herd alone cannot tell from bad luck) fails here.
    after_the_herd = edit_name(staff_browser(), "Herd, after")

    outcomes = [outcome for share in buyers_done for outcome in share]
    assert set(outcomes) <= {"bought", "sold_out", "insufficient_stock", "user_limit_reached"}, set(outcomes)
    assert restocks == [302] * 5  # add units always lands
    # Each edit during the herd either saved or was refused as stale, saying so and saving nothing.
    for status, saved, said_stale in edits:
        assert status == 200 and saved != said_stale, edits
    assert after_the_herd == (200, True, False)
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert sale_now.name == "Herd, after"
    assert sale_now.original_stock == 40 + 5 * 10
    assert sale_now.current_stock >= 0
    assert sale_now.original_stock - sale_now.current_stock == units_bought(sale.pk)
    assert outcomes.count("bought") == Purchase.objects.filter(sale_id=sale.pk).count()


def test_an_edit_racing_a_committed_purchase_is_saved_and_the_purchase_stays(monkeypatch):
    sale = SaleFactory(name="Sneakers", original_stock=10)
    buyer = UserFactory()
    browser = staff_browser()
    change_url = reverse("admin:sales_flashsale_change", args=[sale.pk])
    data = form_data(browser.get(change_url).content.decode(), "flashsale_form")
    data["name"] = "Renamed"
    data["original_stock"] = "12"
    real_update = services.update_sale

    def purchase_commits_first(**kwargs):
        # The form has validated against the current version. Another connection now buys and
        # commits before the admin's UPDATE runs: the real race, on two real transactions.
        def buy():
            try:
                purchase.purchase(user=buyer, sale_id=sale.pk, quantity=3)
            finally:
                connection.close()

        racer = threading.Thread(target=buy)
        racer.start()
        racer.join(timeout=30)
        return real_update(**kwargs)

    monkeypatch.setattr(services, "update_sale", purchase_commits_first)

    response = browser.post(change_url, data, follow=True)

    assert response.status_code == 200
    assert not any("changed while you were editing" in str(m) for m in response.context["messages"])
    sale_now = FlashSale.objects.get(pk=sale.pk)
    # A purchase is not a staff edit: the edit is saved, its stock change applied as a delta over it.
    assert (sale_now.name, sale_now.original_stock, sale_now.current_stock) == ("Renamed", 12, 9)
    assert sale_now.version == sale.version + 1
    assert units_bought(sale.pk) == 3
