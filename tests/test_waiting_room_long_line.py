"""The waiting room's reads and steps that stay cheap however long the line (issue 22,
bench/queue_step.py): a buyer's place in one read, the line's length from positions, the running
admissions from an index, the draw's positions in one statement. Each answers what the plain reads
and writes answered."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from sales import queue
from sales.models import FlashSale, Purchase, QueuePlace
from tests.factories import SaleFactory, TokenFactory, UserFactory

pytestmark = pytest.mark.django_db


def queue_path(sale_id) -> str:
    return f"/api/v1/flashsales/{sale_id}/queue"


def waiting_room_sale(**fields):
    sale = SaleFactory(waiting_room=True, admit_per_second=2, **fields)
    FlashSale.objects.filter(pk=sale.pk).update(queue_drawn_at=timezone.now() - timedelta(seconds=30))
    return sale


def places(sale, count: int) -> list:
    """`count` numbered places (positions 1..count) of buyers who have no token yet."""
    return [QueuePlace.objects.create(sale=sale, user=UserFactory(), position=n) for n in range(1, count + 1)]


def test_a_place_is_read_with_its_sale_in_one_query_and_answers_as_before(buyer_api, buyer):
    sale = waiting_room_sale()
    places(sale, 4)
    QueuePlace.objects.create(sale=sale, user=buyer, position=5)
    buyer_api.get(queue_path(sale.pk))  # the token is cached from here on

    with CaptureQueriesContext(connection) as queries:
        answer = buyer_api.get(queue_path(sale.pk))

    assert answer.status_code == 200
    assert answer.json()["data"] == {
        "saleId": sale.pk,
        "status": "waiting",
        "position": 5,
        "aheadOfYou": 4,
        "estimatedWaitSeconds": 2,
        "admittedUntil": None,
    }
    reads = [query["sql"] for query in queries.captured_queries if "sales_" in query["sql"]]
    assert len(reads) == 1, reads
    assert "sales_queueplace" in reads[0] and "sales_flashsale" in reads[0]


@pytest.mark.parametrize(
    ("admitted_until", "stock", "status"),
    [
        (timedelta(seconds=60), 10, "admitted"),
        (timedelta(seconds=-1), 10, "expired"),
        (timedelta(seconds=60), 0, "closed"),
    ],
)
def test_an_admitted_place_reads_admitted_then_expired_and_closed_once_sold_out(
    buyer_api, buyer, admitted_until, stock, status
):
    sale = waiting_room_sale(original_stock=10)
    until = timezone.now() + admitted_until
    QueuePlace.objects.create(sale=sale, user=buyer, position=1, admitted_until=until)
    FlashSale.objects.filter(pk=sale.pk).update(admitted_through=1, current_stock=stock)

    answer = buyer_api.get(queue_path(sale.pk))

    assert answer.status_code == 200
    data = answer.json()["data"]
    assert (data["status"], data["position"], data["aheadOfYou"]) == (status, 1, 0)
    assert data["admittedUntil"] == until.isoformat().replace("+00:00", "Z")


def test_reading_a_place_names_the_refusal_as_before_and_changes_nothing(buyer_api, buyer):
    line = waiting_room_sale()
    places(line, 2)
    switched_off = waiting_room_sale()
    QueuePlace.objects.create(sale=switched_off, user=buyer, position=1)
    # Staff turned the waiting room off after the buyer took a place.
    FlashSale.objects.filter(pk=switched_off.pk).update(waiting_room=False)
    plain = SaleFactory()

    answers = {
        name: buyer_api.get(queue_path(sale_id))
        for name, sale_id in [
            ("not joined", line.pk),
            ("switched off", switched_off.pk),
            ("no waiting room", plain.pk),
            ("missing", 999_999),
        ]
    }

    codes = {name: (answer.status_code, answer.json()["error"]["code"]) for name, answer in answers.items()}
    assert codes == {
        "not joined": (404, "not_in_queue"),
        "switched off": (409, "no_waiting_room"),
        "no waiting room": (409, "no_waiting_room"),
        "missing": (404, "sale_not_found"),
    }
    assert QueuePlace.objects.count() == 3
    assert not QueuePlace.objects.filter(user=buyer, sale=line).exists()


def test_the_line_length_counts_numbered_and_unnumbered_places():
    sale = waiting_room_sale()
    places(sale, 7)
    for _ in range(3):
        QueuePlace.objects.create(sale=sale, user=UserFactory())
    other = waiting_room_sale()
    places(other, 2)

    summary = queue.line_summary(sale)

    assert summary.queue_length == QueuePlace.objects.filter(sale=sale).count() == 10
    assert queue.line_summary(other).queue_length == 2
    assert queue.line_summary(waiting_room_sale()).queue_length == 0


def test_admitted_not_bought_counts_running_admissions_without_a_unit_of_this_sale():
    sale = waiting_room_sale(original_stock=10)
    line = places(sale, 8)
    now = timezone.now()
    running, expired = now + timedelta(seconds=60), now - timedelta(seconds=1)
    for place, until in zip(line, [expired, expired, running, running, running, running, None, None], strict=True):
        QueuePlace.objects.filter(pk=place.pk).update(admitted_until=until)
    # One running admission bought; one bought in another sale only (still counts); an expired one bought.
    Purchase.objects.create(sale=sale, user=line[2].user, quantity=1)
    Purchase.objects.create(sale=SaleFactory(), user=line[3].user, quantity=1)
    Purchase.objects.create(sale=sale, user=line[0].user, quantity=1)
    elsewhere = waiting_room_sale()
    QueuePlace.objects.create(sale=elsewhere, user=TokenFactory().user, position=1, admitted_until=running)

    assert queue.admitted_not_bought(sale.pk, moment=now) == 3
    assert queue.line_summary(sale).admitted_not_bought == 3


@pytest.mark.postgres
def test_the_running_admissions_are_read_from_their_index_not_from_every_place():
    sale = waiting_room_sale()
    places(sale, 3)

    with connection.cursor() as cursor:
        # A table this small is read whole unless the planner is told not to: the question is
        # whether an index serves the admission step's condition at all.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT count(*) FROM sales_queueplace WHERE sale_id = %s AND admitted_until > now()", [sale.pk]
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "queue_admission_idx" in plan, plan


def test_the_draw_numbers_a_pre_queue_of_many_batches_as_one_permutation_then_later_places():
    sale = SaleFactory(waiting_room=True)
    buyers = User.objects.bulk_create(
        User(email=f"line{n}@example.com", name=f"Buyer {n}", password="!") for n in range(2_600)
    )
    pre = QueuePlace.objects.bulk_create(QueuePlace(sale=sale, user=user, pre_queue=True) for user in buyers[:2_500])
    later = QueuePlace.objects.bulk_create(QueuePlace(sale=sale, user=user) for user in buyers[2_500:])

    assert queue.number_places() == 2_600

    positions = dict(QueuePlace.objects.filter(sale=sale).values_list("pk", "position"))
    drawn = [positions[place.pk] for place in pre]
    assert sorted(drawn) == list(range(1, 2_501))
    assert drawn != sorted(drawn)  # shuffled: in id order once in 2500! draws
    assert [positions[place.pk] for place in later] == list(range(2_501, 2_601))
    assert not QueuePlace.objects.filter(sale=sale, numbered_at__isnull=True).exists()
