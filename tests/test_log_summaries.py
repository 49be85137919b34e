"""A failure repeated by every request is logged once, then counted (issue 25, item 13).

With Redis gone, every purchase logged the same channel-layer traceback: 285 ERROR tracebacks
(1.47 MB) in 2.3 s. core.logging.RepeatedFailureSummary lets the first record of a cause
through and writes one line per interval with the count of the others.
"""

import itertools
import json
import logging
import threading
from types import SimpleNamespace

import httpx
import pytest
from django.conf import settings

from core.logging import JsonFormatter, RepeatedFailureSummary
from harness.faults import redis_server, server_process, wait_for
from sales.models import Purchase
from tests.factories import SaleFactory, TokenFactory

_names = itertools.count()


class Collected(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.summarised = threading.Event()

    def emit(self, record):
        self.records.append(record)
        if hasattr(record, "repeated"):
            self.summarised.set()


def logger_with(summary: RepeatedFailureSummary) -> tuple[logging.Logger, Collected]:
    logger = logging.getLogger(f"tests.log_summaries.{next(_names)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = Collected()
    logger.addHandler(handler)
    logger.addFilter(summary)
    return logger, handler


@pytest.fixture
def log():
    """A logger of its own behind a summary whose clock the test moves (no timers: flush() writes)."""
    now = [1000.0]
    summary = RepeatedFailureSummary(interval_seconds=10, clock=lambda: now[0], timers=False)
    logger, handler = logger_with(summary)

    def advance(seconds: float) -> None:
        now[0] += seconds

    return SimpleNamespace(logger=logger, summary=summary, records=handler.records, advance=advance)


def redis_failure(logger: logging.Logger, group: str = "sale-1") -> None:
    try:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    except ConnectionError:
        logger.exception("broadcast to %s failed", group)


def database_failure(logger: logging.Logger) -> None:
    try:
        raise TimeoutError("no connection from the pool")
    except TimeoutError:
        logger.exception("broadcast to %s failed", "sale-1")


def test_many_failures_in_one_interval_are_one_line_with_the_traceback_and_one_summary_with_the_count(log):
    for number in range(285):
        redis_failure(log.logger, group=f"sale-{number}")
    written_during_the_outage = len(log.records)
    log.advance(10)
    log.summary.flush()

    lines = [json.loads(JsonFormatter().format(record)) for record in log.records]

    assert written_during_the_outage == 1
    assert len(lines) == 2
    first, summary = lines
    assert first["message"] == "broadcast to sale-0 failed" and first["level"] == "ERROR"
    assert "ConnectionError: Error 111" in first["exception"]
    assert summary["level"] == "ERROR" and "exception" not in summary
    assert summary["repeated"] == 284 and summary["interval_seconds"] == 10
    assert summary["message"] == "broadcast to sale-0 failed (repeated 284 more times within 10 s)"


def test_each_cause_gets_its_own_first_line_and_its_own_count(log):
    for _ in range(30):
        redis_failure(log.logger)
        database_failure(log.logger)
        log.logger.warning("sale gate: cache unreachable, asking the database")
    log.advance(10)
    log.summary.flush()

    firsts = [record for record in log.records if not hasattr(record, "repeated")]
    counts = sorted(
        (record.getMessage().split(" (")[0], record.repeated) for record in log.records if hasattr(record, "repeated")
    )

    assert [record.exc_info[0] if record.exc_info else None for record in firsts] == [
        ConnectionError,
        TimeoutError,
        None,
    ]
    assert counts == [
        ("broadcast to sale-1 failed", 29),
        ("broadcast to sale-1 failed", 29),
        ("sale gate: cache unreachable, asking the database", 29),
    ]


def test_a_cause_that_goes_on_writes_one_summary_per_interval_and_after_a_quiet_interval_logs_in_full_again(log):
    redis_failure(log.logger)
    for repeats in (5, 7, 3):
        for _ in range(repeats):
            redis_failure(log.logger)
        log.advance(10)
        log.summary.flush()
    log.advance(10)
    log.summary.flush()  # an interval without the failure: nothing to say
    redis_failure(log.logger)

    assert [getattr(record, "repeated", None) for record in log.records] == [None, 5, 7, 3, None]
    assert log.records[-1].exc_info is not None  # the outage's return is logged with its traceback


def test_the_next_failure_after_an_interval_writes_the_summary_without_a_flush(log):
    for _ in range(10):
        redis_failure(log.logger)
    log.advance(11)
    log.logger.error("something else entirely")

    assert [(record.getMessage()[:26], getattr(record, "repeated", None)) for record in log.records] == [
        ("broadcast to sale-1 failed", None),
        ("broadcast to sale-1 failed", 9),
        ("something else entirely", None),
    ]


def test_records_below_warning_are_never_summarised(log):
    for _ in range(50):
        log.logger.info("request")

    assert len(log.records) == 50


def test_the_summary_is_written_when_the_interval_ends_without_another_record():
    summary = RepeatedFailureSummary(interval_seconds=0.2)
    logger, handler = logger_with(summary)

    for _ in range(20):
        redis_failure(logger)

    assert handler.summarised.wait(timeout=30)  # a bound: the timer fires at the interval's end
    assert [getattr(record, "repeated", None) for record in handler.records] == [None, 19]


def test_the_loggers_that_report_outages_summarise_their_repeats():
    for name in ("flashsale.cache", "flashsale.realtime", "flashsale.auth", "flashsale.gate", "flashsale.errors"):
        assert any(isinstance(f, RepeatedFailureSummary) for f in logging.getLogger(name).filters), name
    assert not logging.getLogger("flashsale.request").filters  # one line per request, by design
    assert settings.LOG_REPEAT_INTERVAL_SECONDS == 10


# --- a real Daphne whose Redis dies ----------------------------------------------------------------


def log_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_purchases_during_a_redis_outage_log_each_failure_once_and_then_its_count():
    sale = SaleFactory(original_stock=100)
    tokens = [TokenFactory().key for _ in range(40)]

    with (
        redis_server() as redis,
        server_process(REDIS_URL=redis.url, CACHE_RETRY_SECONDS="1", LOG_REPEAT_INTERVAL_SECONDS="2") as server,
    ):
        redis.stop()
        statuses = [
            httpx.post(
                f"{server.base_url}/api/v1/flashsales/purchase",
                json={"saleId": sale.pk, "quantity": 1},
                headers={"Authorization": f"Token {token}"},
                timeout=30,
            ).status_code
            for token in tokens
        ]
        # Every purchase's push failed: the first is logged, the others are counted in summaries.
        wait_for(lambda: failures_told(server.output()) >= 40, 30, "summaries counting every failed push")
        lines = log_lines(server.output())

    assert statuses == [201] * 40
    assert Purchase.objects.count() == 40
    broadcasts = [line for line in lines if line["message"].startswith("broadcast to ")]
    assert len([line for line in broadcasts if "exception" in line]) == 1
    assert len(broadcasts) < 10
    assert len([line for line in lines if "exception" in line]) < 10


def failures_told(output: str) -> int:
    """Failed pushes the log accounts for: one per line, plus each summary's count."""
    broadcasts = [line for line in log_lines(output) if line["message"].startswith("broadcast to ")]
    return sum(line.get("repeated", 1) for line in broadcasts)
