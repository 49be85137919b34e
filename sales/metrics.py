"""The purchase's own metrics, counted where its outcome is known: the purchase view (sales.api) and
the gate's fast path (sales.fastpath). core.metrics serves them with the rest; it knows no purchase."""

import functools

from django.http import HttpResponse
from django.urls import resolve, reverse
from prometheus_client import Counter

from core.errors import error_code_of
from idempotency.decorators import REPLAYED_HEADER

# A purchase answered by something that recorded no registered code (none does today).
UNKNOWN_OUTCOME = "unknown"

PURCHASES = Counter(
    "flashsale_purchases",
    "Purchase requests answered by the purchase (its view or the gate's fast path), by outcome: "
    "'purchased' for a new purchase (201), 'replayed' for an Idempotency-Key replay, else the error code",
    ["code"],
)
SALE_GATE_HITS = Counter(
    "flashsale_sale_gate_hits",
    "Purchases refused from the cached sale gate without asking the database, by refusal code",
    ["code"],
)


@functools.cache
def purchase_route() -> str:
    """The purchase's route label, the same whether the fast path or the view answered."""
    return resolve(reverse("purchase")).route


def count_purchase(response: HttpResponse) -> None:
    """Count one answered purchase request by its outcome, from what answered (the success, the
    replay header, the code the error was built with), never from the rendered body; every value
    is from a fixed set."""
    if response.has_header(REPLAYED_HEADER):
        outcome = "replayed"
    elif response.status_code == 201:
        outcome = "purchased"
    else:
        code = error_code_of(response)
        outcome = code.value if code is not None else UNKNOWN_OUTCOME
    PURCHASES.labels(code=outcome).inc()
