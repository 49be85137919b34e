"""Reads of stored Idempotency-Key answers, for other apps' checks (sales' audit).

The stored body's JSON shape is this app's business: callers get the decoded `data` of a success
answer, or None when the stored body is not one.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from idempotency.models import IdempotencyKey


@dataclass(frozen=True)
class StoredAnswer:
    pk: int
    key: str
    user_id: int
    status_code: int | None
    created_id: int | None
    data: dict[str, Any] | None  # a success answer's `data`; None when the body is not one


def key_count() -> int:
    return IdempotencyKey.objects.count()


def _successes() -> QuerySet[IdempotencyKey]:
    return IdempotencyKey.objects.filter(status_code__gte=200, status_code__lt=300).order_by("pk")


def created_ids_of_successes() -> QuerySet[IdempotencyKey, Any]:
    """The ids of the rows that success answers created, as a subquery."""
    return _successes().values("created_id")


def successes() -> Iterator[StoredAnswer]:
    """Every stored success answer, oldest first, with its body's `data` decoded."""
    for record in _successes().only("pk", "key", "user_id", "status_code", "created_id", "response_body"):
        yield StoredAnswer(
            pk=record.pk,
            key=record.key,
            user_id=record.user_id,
            status_code=record.status_code,
            created_id=record.created_id,
            data=_data(record.response_body),
        )


def failures_pointing_at_a_row() -> Iterator[StoredAnswer]:
    """Stored failure answers that nonetheless point at a created row (there should be none)."""
    failures = IdempotencyKey.objects.filter(status_code__gte=300, created_id__isnull=False).order_by("pk")
    for record in failures.only("pk", "key", "user_id", "status_code", "created_id"):
        yield StoredAnswer(
            pk=record.pk,
            key=record.key,
            user_id=record.user_id,
            status_code=record.status_code,
            created_id=record.created_id,
            data=None,
        )


def _data(body: str) -> dict[str, Any] | None:
    try:
        data = json.loads(body)["data"]
    except (ValueError, KeyError, TypeError):
        return None
    return data if isinstance(data, dict) else None
