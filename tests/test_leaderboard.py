from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sales.models import FlashSale, Purchase
from tests.factories import PurchaseFactory, SaleFactory, UserFactory

pytestmark = pytest.mark.django_db

LEADERBOARD = "/api/v1/leaderboard"


def test_purchases_with_known_timestamps_come_back_in_chronological_order(api):
    sale = SaleFactory()
    base = timezone.now() - timedelta(minutes=10)
    # Inserted out of order on purpose, down to microsecond differences.
    third = PurchaseFactory(sale=sale, created_at=base + timedelta(seconds=2))
    first = PurchaseFactory(sale=sale, created_at=base)
    second = PurchaseFactory(sale=sale, created_at=base + timedelta(microseconds=1))

    response = api.get(LEADERBOARD)

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["count"] == 3
    assert [p["purchaseId"] for p in body["data"]["purchases"]] == [first.pk, second.pk, third.pk]
    assert body["data"]["purchases"][0] == {
        "purchaseId": first.pk,
        "userName": first.user.name,
        "saleId": sale.pk,
        "quantity": 1,
        "timestamp": first.created_at.isoformat().replace("+00:00", "Z"),
    }


def test_equal_timestamps_are_ordered_by_purchase_id(api):
    moment = timezone.now()
    ids = [PurchaseFactory(created_at=moment).pk for _ in range(3)]

    purchases = api.get(LEADERBOARD).json()["data"]["purchases"]

    assert [p["purchaseId"] for p in purchases] == sorted(ids)


def test_leaderboard_never_shows_emails(api):
    PurchaseFactory(user=UserFactory(email="secret@example.com"))

    assert "secret@example.com" not in api.get(LEADERBOARD).content.decode()


def test_an_unknown_sale_id_is_404_sale_not_found(api):
    PurchaseFactory()

    response = api.get(LEADERBOARD, {"saleId": 987654})

    assert response.status_code == 404
    body = response.json()
    assert body["success"] is False
    assert body["error"] == {
        "code": "sale_not_found",
        "message": body["error"]["message"],
        "details": {"saleId": 987654},
    }
    assert not FlashSale.objects.filter(pk=987654).exists()


def test_a_known_sale_without_purchases_is_an_empty_page(api):
    sale = SaleFactory()
    PurchaseFactory()

    body = api.get(LEADERBOARD, {"saleId": sale.pk}).json()

    assert (body["success"], body["count"], body["data"]["purchases"]) == (True, 0, [])


def test_sale_filter_and_pagination(api):
    sale, other = SaleFactory(), SaleFactory()
    base = timezone.now() - timedelta(minutes=1)
    ours = [PurchaseFactory(sale=sale, created_at=base + timedelta(seconds=i)).pk for i in range(5)]
    PurchaseFactory(sale=other)

    body = api.get(LEADERBOARD, {"saleId": sale.pk, "page": 2, "limit": 2}).json()

    assert (body["count"], body["page"], body["limit"]) == (5, 2, 2)
    assert [p["purchaseId"] for p in body["data"]["purchases"]] == ours[2:4]


@pytest.mark.parametrize(
    "query",
    [{"page": 0}, {"page": "x"}, {"limit": 0}, {"limit": 101}, {"limit": "1.5"}, {"saleId": "abc"}, {"saleId": -1}],
)
def test_bad_pagination_or_filter_values_are_400(api, query):
    response = api.get(LEADERBOARD, query)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_leaderboard_is_public_even_with_a_bad_token(api):
    api.credentials(HTTP_AUTHORIZATION="Token nonsense")

    assert api.get(LEADERBOARD).status_code == 200


# --- bounded work for anonymous reads (issue 12, item 4) ------------------------------------


def purchases_of(sale, n: int) -> list[int]:
    base = timezone.now() - timedelta(minutes=10)
    # Two purchases share each timestamp, so keyset paging must break ties by id.
    return [PurchaseFactory(sale=sale, created_at=base + timedelta(seconds=i // 2)).pk for i in range(n)]


def test_after_pages_through_every_purchase_once_in_order(api):
    sale = SaleFactory()
    ids = purchases_of(sale, 7)
    PurchaseFactory()  # another sale's

    seen, after, pages = [], None, []
    for _ in range(10):
        body = api.get(LEADERBOARD, {"saleId": sale.pk, "limit": 3, **({"after": after} if after else {})}).json()
        pages.append(body)
        seen += [p["purchaseId"] for p in body["data"]["purchases"]]
        after = body["nextAfter"]
        if after is None:
            break

    assert seen == sorted(ids, key=lambda pk: (Purchase.objects.get(pk=pk).created_at, pk))
    assert [len(p["data"]["purchases"]) for p in pages] == [3, 3, 1]
    assert all(p["count"] == 7 and p["limit"] == 3 for p in pages)
    assert Purchase.objects.filter(sale=sale).count() == 7


def test_a_full_page_by_number_also_says_where_to_continue(api):
    sale = SaleFactory()
    ids = purchases_of(sale, 4)

    first = api.get(LEADERBOARD, {"saleId": sale.pk, "limit": 2}).json()
    rest = api.get(LEADERBOARD, {"saleId": sale.pk, "limit": 2, "after": first["nextAfter"]}).json()

    assert first["nextAfter"] == first["data"]["purchases"][-1]["purchaseId"]
    assert [p["purchaseId"] for p in first["data"]["purchases"] + rest["data"]["purchases"]] == ids
    assert rest["nextAfter"] == ids[-1]  # a full last page cannot know it is the last


@pytest.mark.parametrize(
    "query",
    [{"after": 0}, {"after": "x"}, {"after": 10**20}, {"after": 1, "page": 1}, {"page": 200, "limit": 100}],
)
def test_bad_keyset_or_too_deep_page_is_400_and_changes_nothing(api, settings, query):
    settings.LEADERBOARD_MAX_OFFSET = 10_000
    PurchaseFactory()

    response = api.get(LEADERBOARD, query)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert Purchase.objects.count() == 1


def test_after_an_unknown_purchase_is_400(api):
    missing = PurchaseFactory().pk + 1000

    response = api.get(LEADERBOARD, {"after": missing})

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "validation_error",
        "message": response.json()["error"]["message"],
        "details": {"after": ["No purchase with this id."]},
    }


def test_the_deepest_page_within_the_cap_is_served(api, settings):
    settings.LEADERBOARD_MAX_OFFSET = 4
    sale = SaleFactory()
    ids = purchases_of(sale, 6)

    within = api.get(LEADERBOARD, {"saleId": sale.pk, "page": 3, "limit": 2})
    beyond = api.get(LEADERBOARD, {"saleId": sale.pk, "page": 4, "limit": 2})

    assert within.status_code == 200
    assert [p["purchaseId"] for p in within.json()["data"]["purchases"]] == ids[4:6]
    assert beyond.status_code == 400


def sql_of(queries) -> list[str]:
    return [q["sql"].upper() for q in queries.captured_queries]


def test_a_cached_leaderboard_read_is_one_query_without_count_or_deep_offset(api, settings):
    settings.LEADERBOARD_MAX_OFFSET = 50
    sale = SaleFactory()
    purchases_of(sale, 5)
    api.get(LEADERBOARD, {"saleId": sale.pk})  # fills the cached count

    with CaptureQueriesContext(connection) as by_page:
        page = api.get(LEADERBOARD, {"saleId": sale.pk, "page": 2, "limit": 2})
    with CaptureQueriesContext(connection) as by_key:
        keyset = api.get(LEADERBOARD, {"saleId": sale.pk, "limit": 2, "after": page.json()["nextAfter"]})

    assert page.status_code == keyset.status_code == 200
    assert page.json()["count"] == keyset.json()["count"] == 5
    [page_sql] = sql_of(by_page)
    assert "COUNT(" not in page_sql and "OFFSET 2" in page_sql and "LIMIT 2" in page_sql
    anchor_sql, keyset_sql = sql_of(by_key)
    assert "COUNT(" not in anchor_sql + keyset_sql
    assert "OFFSET" not in keyset_sql and "LIMIT 2" in keyset_sql
    assert '"SALES_PURCHASE"."ID" = ' in anchor_sql and "LIMIT 1" in anchor_sql


def test_the_count_is_computed_once_per_cache_window(api):
    sale = SaleFactory()
    purchases_of(sale, 3)

    with CaptureQueriesContext(connection) as queries:
        bodies = [api.get(LEADERBOARD, {"saleId": sale.pk}).json() for _ in range(5)]

    assert [body["count"] for body in bodies] == [3] * 5
    assert len([sql for sql in sql_of(queries) if "COUNT(" in sql]) == 1
