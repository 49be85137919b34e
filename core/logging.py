"""One JSON object per log line, so request logs can be parsed by any log shipper; repeated failures
summarised instead of logged once per request."""

import json
import logging
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Structured fields passed as `extra=` become top-level keys.
        entry.update({key: value for key, value in vars(record).items() if key not in _RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RepeatedFailureSummary(logging.Filter):
    """Lets the first record of a cause through and counts its repeats, one summary line per interval.

    An outage makes every request fail the same way: with Redis gone each purchase logged the same
    channel-layer traceback, a flood that buried everything else in the log (issue 25). A cause is
    the logger, the level, the message template (before its arguments) and, for an exception, its
    type and the line that raised it. Its first record passes, traceback included; the repeats in
    the next `interval_seconds` are dropped and counted, and when the interval ends one line says
    how many there were ("repeated": N). While the cause goes on, each interval gives one such line;
    after an interval without it, the next record passes in full again. Records below `level` pass
    untouched. Attach it to the loggers that report failures (settings.LOGGING), not to a handler:
    the request log is one line per request by design.
    """

    _instances: "weakref.WeakSet[RepeatedFailureSummary]" = weakref.WeakSet()

    def __init__(
        self,
        interval_seconds: float = 10.0,
        level: int | str = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
        timers: bool = True,
    ):
        super().__init__()
        self.interval = float(interval_seconds)
        self.level = logging.getLevelName(level) if isinstance(level, str) else level
        self.clock = clock
        # Off, a summary is written only by the next record through the filter or by flush().
        self.timers = timers
        self._lock = threading.Lock()
        self._causes: dict[tuple, _Cause] = {}
        RepeatedFailureSummary._instances.add(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.interval <= 0 or record.levelno < self.level or hasattr(record, "repeated"):
            return True
        key = _cause_of(record)
        now = self.clock()
        with self._lock:
            due = self._take_due(now)
            cause = self._causes.get(key)
            if cause is None:
                self._causes[key] = _Cause(record, until=now + self.interval)
                passes = True
            else:
                cause.count += 1
                passes = False
                if cause.count == 1 and self.timers:
                    # A little past the interval's end, so the flush finds it ended.
                    timer = threading.Timer(max(0.0, cause.until - now) + 0.05, self.flush)
                    timer.daemon = True
                    timer.start()
        self._write(due)
        return passes

    def flush(self) -> None:
        """Write the summaries of every interval that has ended."""
        with self._lock:
            due = self._take_due(self.clock())
        self._write(due)

    def forget(self) -> None:
        """Drop every cause and count, unwritten (a test's fresh start)."""
        with self._lock:
            self._causes.clear()

    @classmethod
    def forget_all(cls) -> None:
        for instance in list(cls._instances):
            instance.forget()

    def _take_due(self, now: float) -> list[tuple["_Cause", int]]:
        """Causes whose interval ended: those that repeated get a summary and a new interval, the
        others are forgotten. Called with the lock held."""
        due = []
        for key, cause in list(self._causes.items()):
            if now < cause.until:
                continue
            if cause.count:
                due.append((cause, cause.count))
                cause.count = 0
                cause.until = now + self.interval
            else:
                del self._causes[key]
        return due

    def _write(self, due: list[tuple["_Cause", int]]) -> None:
        for cause, count in due:
            logger = logging.getLogger(cause.logger)
            summary = logger.makeRecord(
                cause.logger,
                cause.levelno,
                cause.pathname,
                cause.lineno,
                "%s (repeated %d more times within %g s)",
                (cause.message, count, self.interval),
                None,
                extra={"repeated": count, "interval_seconds": self.interval},
            )
            # Through the logger, so it reaches the same handlers; this filter lets it pass.
            logger.handle(summary)


class _Cause:
    def __init__(self, record: logging.LogRecord, until: float):
        self.logger = record.name
        self.levelno = record.levelno
        self.pathname = record.pathname
        self.lineno = record.lineno
        self.message = record.getMessage()
        self.until = until
        self.count = 0


def _cause_of(record: logging.LogRecord) -> tuple:
    raised_at = None
    exc_type = None
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        exc_type = type(error).__qualname__
        traceback = error.__traceback__
        while traceback is not None and traceback.tb_next is not None:
            traceback = traceback.tb_next
        if traceback is not None:
            raised_at = (traceback.tb_frame.f_code.co_filename, traceback.tb_lineno)
    template = record.msg if isinstance(record.msg, str) else repr(type(record.msg))
    return (record.name, record.levelno, template, exc_type, raised_at)
