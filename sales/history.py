"""A sale's history as staff read it: every staff write, from the admin or the API, as one entry of
Django admin's LogEntry that says what changed from what (the admin's History page shows it).

Django's own change message only names the fields ("Changed Name."); during a drop staff need to
see that the end moved from 18:00 to 18:30, and who moved it.
"""

from datetime import UTC, datetime
from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, LogEntry

from accounts.models import User
from sales.models import FlashSale

# The fields a staff edit can change, in the order the history lists them, with their labels.
TRACKED_FIELDS = {
    "name": "name",
    "start_time": "start",
    "end_time": "end",
    "original_stock": "original stock",
    "waiting_room": "waiting room",
    "admit_per_second": "admit per second",
    "admission_seconds": "admission seconds",
    "queue_opens_at": "queue opens",
    "admission_paused": "admission paused",
    "join_difficulty": "join difficulty",
}
THROUGH_API = "Through the API: "


def show(value: Any) -> str:
    """A value as the history prints it: times in UTC to the second, text quoted, numbers as they are."""
    if isinstance(value, datetime):
        return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    if value is None:
        return "–"
    if isinstance(value, str):
        return f"“{value}”"
    return str(value)


def describe_changes(before: FlashSale, after: FlashSale) -> str:
    """`Changed end: 2026-12-05 18:00:00 UTC → 2026-12-05 18:30:00 UTC.`, or "" when nothing differs."""
    changed = [
        f"{label}: {show(getattr(before, field))} → {show(getattr(after, field))}"
        for field, label in TRACKED_FIELDS.items()
        if getattr(before, field) != getattr(after, field)
    ]
    return f"Changed {'; '.join(changed)}." if changed else ""


def describe_sale(sale: FlashSale) -> str:
    """What a new sale was created with."""
    values = "; ".join(f"{label}: {show(getattr(sale, field))}" for field, label in TRACKED_FIELDS.items())
    return f"Added with {values}."


def record(*, user: User, sale: FlashSale, message: str, added: bool = False) -> None:
    """Add `message` to `sale`'s history, by `user` (the admin's History page lists it)."""
    LogEntry.objects.log_actions(
        user_id=user.pk,
        queryset=[sale],
        action_flag=ADDITION if added else CHANGE,
        change_message=message,
        single_object=True,
    )
