"""Which waiting rooms' lines to announce as `queue_advanced`, and how often.

A line moves with every admission step (the sale clock's tick) and every join, but a buyer needs no
more than one figure a second to work out their own place from their position: each open line is
read at most once per QUEUE_PUSH_INTERVAL_MS and announced only when what it says changed (how far
admission reached, the rate, the places taken). The sale clock does it with a channel layer
(`announce_lines`, after its admission step); without one, the database feed of each WebSocket
process does the same with its own `LineNews` (live/db_feed.py). The hub enforces the interval per
socket too, whatever the number of sources (live/hub.py).
"""

import time
from dataclasses import dataclass

from django.conf import settings

from live import events, realtime
from sales import selectors
from sales.models import FlashSale


def interval() -> float:
    return settings.QUEUE_PUSH_INTERVAL_MS / 1000


@dataclass(frozen=True)
class Line:
    sale_id: int
    admitted_through: int
    admit_per_second: int
    queue_length: int

    @classmethod
    def of(cls, sale: FlashSale) -> "Line":
        """The sale's line as stored now (`sale` read after the admission step it reports)."""
        return cls(sale.pk, sale.admitted_through, sale.admit_per_second, selectors.queue_length(sale.pk))

    def message(self) -> dict:
        return realtime.queue_advanced_message(
            sale_id=self.sale_id,
            admitted_through=self.admitted_through,
            admit_per_second=self.admit_per_second,
            queue_length=self.queue_length,
        )


class LineNews:
    """What one announcer last read and told of each line, so it reads a line at most once per
    interval and tells only a change."""

    def __init__(self) -> None:
        self._read_at: dict[int, float] = {}
        self._told: dict[int, Line] = {}

    def due(self, sale_id: int, now: float) -> bool:
        """Whether the line of `sale_id` may be read again at `now` (monotonic seconds)."""
        read_at = self._read_at.get(sale_id)
        return read_at is None or now - read_at >= interval()

    def news(self, line: Line, now: float) -> bool:
        """Record the line read at `now`; True when it differs from the one last told."""
        self._read_at[line.sale_id] = now
        if self._told.get(line.sale_id) == line:
            return False
        self._told[line.sale_id] = line
        return True

    def keep_only(self, sale_ids: set[int]) -> None:
        """Forget lines no longer followed: a line opened again is told afresh."""
        for known in (self._read_at, self._told):
            for sale_id in [sale_id for sale_id in known if sale_id not in sale_ids]:
                del known[sale_id]


def announce_lines(news: LineNews, rooms: list[FlashSale]) -> int:
    """The sale clock's announcement, after its admission step: every open line (`rooms`, read by
    selectors.open_waiting_rooms after the step) that changed and was not read within the interval.
    Returns how many were announced."""
    now = time.monotonic()
    told = 0
    for sale in rooms:
        if not news.due(sale.pk, now):
            continue
        line = Line.of(sale)
        if news.news(line, now):
            events.queue_advanced(
                sale_id=line.sale_id,
                admitted_through=line.admitted_through,
                admit_per_second=line.admit_per_second,
                queue_length=line.queue_length,
            )
            told += 1
    news.keep_only({sale.pk for sale in rooms})
    return told
