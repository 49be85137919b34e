"""manage.py auditsales: silent success on consistent data, a clear report and exit 1 otherwise."""

import json
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from harness.servers import PROJECT_DIR, server_env
from idempotency.models import IdempotencyKey
from sales.models import FlashSale
from tests.factories import PurchaseFactory, SaleFactory, UserFactory

pytestmark = pytest.mark.django_db

PURCHASE = "/api/v1/flashsales/purchase"


def audit(*args: str) -> tuple[bool, str]:
    from io import StringIO

    out = StringIO()
    try:
        call_command("auditsales", *args, stdout=out)
    except CommandError as error:
        assert error.returncode == 1
        return False, out.getvalue()
    return True, out.getvalue()


def consistent_sale(units_by_user: dict, original: int = 20) -> FlashSale:
    sold = sum(units_by_user.values())
    sale = SaleFactory(original_stock=original, current_stock=original - sold)
    for user, units in units_by_user.items():
        PurchaseFactory(sale=sale, user=user, quantity=units)
    return sale


def test_data_made_through_the_api_passes_the_audit(buyer_api, settings):
    sale = SaleFactory(original_stock=10)
    for key, quantity in [("a", 2), ("b", 1), (None, 2)]:
        headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
        assert (
            buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": quantity}, format="json", **headers).status_code
            == 201
        )
    sold_out = consistent_sale({UserFactory(): 1}, original=1)
    buyer_api.post(PURCHASE, {"saleId": sold_out.pk, "quantity": 1}, format="json", HTTP_IDEMPOTENCY_KEY="c")

    ok, output = audit()

    assert ok, output
    assert "audited 2 sales, 4 purchases, 3 idempotency keys" in output
    assert "OK: no violations" in output


def test_stock_that_does_not_match_the_purchases_is_reported(buyer):
    sale = SaleFactory(original_stock=10, current_stock=9)
    PurchaseFactory(sale=sale, user=buyer, quantity=2)

    ok, output = audit()

    assert not ok
    assert f"VIOLATION: sale {sale.pk}" in output
    assert "original 10 - current 9 = 1, but its purchases hold 2 units" in output


def test_a_user_above_the_cap_is_reported(settings):
    settings.MAX_UNITS_PER_USER = 5
    greedy, modest = UserFactory(), UserFactory()
    sale = consistent_sale({greedy: 3, modest: 5})
    PurchaseFactory(sale=sale, user=greedy, quantity=3)
    FlashSale.objects.filter(pk=sale.pk).update(current_stock=sale.current_stock - 3)

    ok, output = audit()

    assert not ok
    assert f"sale {sale.pk}: user {greedy.pk} holds 6 units in 2 purchases, above the cap of 5" in output
    assert f"user {modest.pk}" not in output
    assert audit("--max-units-per-user", "6")[0]


def test_a_sales_own_buyer_limit_is_the_cap_it_is_audited_against(settings):
    settings.MAX_UNITS_PER_USER = 5
    generous, strict = UserFactory(), UserFactory()
    allowed = consistent_sale({generous: 8})
    FlashSale.objects.filter(pk=allowed.pk).update(max_per_buyer=8)
    over = consistent_sale({strict: 3})
    FlashSale.objects.filter(pk=over.pk).update(max_per_buyer=2)

    ok, output = audit()

    assert not ok
    assert f"sale {over.pk}: user {strict.pk} holds 3 units in 1 purchases, above the cap of 2" in output
    assert f"sale {allowed.pk}" not in output


def test_idempotency_keys_that_do_not_point_at_their_purchase_are_reported(buyer_api, buyer):
    sale = SaleFactory(original_stock=10)
    buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json", HTTP_IDEMPOTENCY_KEY="lost")
    buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json", HTTP_IDEMPOTENCY_KEY="wrong")
    other_users = consistent_sale({UserFactory(): 1})
    others_purchase = other_users.purchases.get()
    IdempotencyKey.objects.filter(key="lost").update(created_id=None)
    IdempotencyKey.objects.filter(key="wrong").update(created_id=others_purchase.pk)

    ok, output = audit()

    assert not ok
    assert f"('lost' of user {buyer.pk}): answered purchase" in output
    assert "but points at no purchase" in output
    assert (
        f"('wrong' of user {buyer.pk}): points at purchase {others_purchase.pk} of user {others_purchase.user_id}"
        in output
    )
    assert "answered (purchaseId, saleId, quantity)" in output


def test_a_stored_answer_that_names_another_purchase_is_reported(buyer_api):
    sale = SaleFactory(original_stock=10)
    buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    record = IdempotencyKey.objects.get()
    body = json.loads(record.response_body)
    body["data"]["purchaseId"] += 1000
    IdempotencyKey.objects.filter(pk=record.pk).update(response_body=json.dumps(body))

    ok, output = audit()

    assert not ok
    assert f"answered (purchaseId, saleId, quantity) = ({record.created_id + 1000}, {sale.pk}, 1)" in output


@pytest.mark.postgres
def test_negative_stock_is_reported():
    sale = SaleFactory(original_stock=10, current_stock=0)
    with connection.cursor() as cursor:
        # Only possible with the database's check constraints gone; the test transaction restores them.
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'sales_flashsale'::regclass AND contype = 'c'"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'ALTER TABLE sales_flashsale DROP CONSTRAINT "{name}"')
    FlashSale.objects.filter(pk=sale.pk).update(current_stock=-2)

    ok, output = audit()

    assert not ok
    assert f"sale {sale.pk} ('{sale.name}'): negative stock -2" in output


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # committed, so the command's own process sees the data
def test_the_command_exits_0_on_clean_data_and_1_with_a_report_on_a_violation():
    def run():
        return subprocess.run(
            [sys.executable, "manage.py", "auditsales"],
            cwd=PROJECT_DIR,
            env=server_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    sale = consistent_sale({UserFactory(): 2})
    clean = run()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "OK: no violations" in clean.stdout

    FlashSale.objects.filter(pk=sale.pk).update(current_stock=10)  # 10 units vanished
    broken = run()

    assert broken.returncode == 1
    assert f"VIOLATION: sale {sale.pk}" in broken.stdout
    assert "1 violation(s) found" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_a_purchase_of_a_waiting_room_sale_without_a_valid_admission_is_reported():
    from datetime import timedelta

    from django.utils import timezone

    from sales.models import QueuePlace

    sale = SaleFactory(waiting_room=True, original_stock=10, current_stock=7)
    admitted, late, outsider = UserFactory(), UserFactory(), UserFactory()
    now = timezone.now()
    QueuePlace.objects.create(sale=sale, user=admitted, position=1, admitted_until=now + timedelta(minutes=2))
    QueuePlace.objects.create(sale=sale, user=late, position=2, admitted_until=now - timedelta(minutes=1))
    fine = PurchaseFactory(sale=sale, user=admitted, created_at=now)
    after_lease = PurchaseFactory(sale=sale, user=late, created_at=now)
    unplaced = PurchaseFactory(sale=sale, user=outsider, created_at=now)

    ok, output = audit()

    assert not ok
    assert f"purchase {after_lease.pk} of sale {sale.pk} by user {late.pk}" in output
    assert f"purchase {unplaced.pk} of sale {sale.pk} by user {outsider.pk}" in output
    assert f"purchase {fine.pk} of" not in output
    assert output.count("without a valid admission") == 2
