"""The admin under a real purchase herd on PostgreSQL: real threads, real transactions, no mocked race."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.urls import reverse

from sales import services
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
                    services.purchase(user=user, sale_id=sale.pk, quantity=quantity)
                    outcomes.append("bought")
                except SalesError as refused:
                    outcomes.append(refused.code)
        finally:
            connection.close()
        return outcomes

    def run_the_admin():
        browser = staff_browser()
        start.wait(timeout=30)
        statuses = []
        try:
            for round_ in range(5):
                statuses.append(browser.post(add_units_url, {"units": "10"}).status_code)
                data = form_data(browser.get(change_url).content.decode(), "flashsale_form")
                data["name"] = f"Herd, round {round_}"
                statuses.append(browser.post(change_url, data).status_code)
        finally:
            connection.close()
        return statuses

    shares = [attempts[i::8] for i in range(8)]
    with ThreadPoolExecutor(max_workers=9) as pool:
        admin = pool.submit(run_the_admin)
        buyers_done = list(pool.map(buy_some, shares))
        admin_statuses = admin.result(timeout=120)

    outcomes = [outcome for share in buyers_done for outcome in share]
    assert set(outcomes) <= {"bought", "sold_out", "insufficient_stock", "user_limit_reached"}, set(outcomes)
    # Add units always lands (302); an edit either saves (302) or is refused as stale (200).
    assert admin_statuses[0::2] == [302] * 5
    assert set(admin_statuses[1::2]) <= {200, 302}
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert sale_now.original_stock == 40 + 5 * 10
    assert sale_now.current_stock >= 0
    assert sale_now.original_stock - sale_now.current_stock == units_bought(sale.pk)
    assert outcomes.count("bought") == Purchase.objects.filter(sale_id=sale.pk).count()


def test_an_edit_racing_a_committed_purchase_is_refused_and_the_purchase_stays(monkeypatch):
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
                services.purchase(user=buyer, sale_id=sale.pk, quantity=3)
            finally:
                connection.close()

        racer = threading.Thread(target=buy)
        racer.start()
        racer.join(timeout=30)
        return real_update(**kwargs)

    monkeypatch.setattr(services, "update_sale", purchase_commits_first)

    response = browser.post(change_url, data, follow=True)

    assert response.redirect_chain == [(change_url, 302)]
    assert any("changed while you were editing, reload" in str(m) for m in response.context["messages"])
    sale_now = FlashSale.objects.get(pk=sale.pk)
    assert (sale_now.name, sale_now.original_stock, sale_now.current_stock) == ("Sneakers", 10, 7)
    assert units_bought(sale.pk) == 3
