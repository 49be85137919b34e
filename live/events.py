"""What the rest of the system is told after a sale's state is committed.

Writers outside this app call one function, `send_after_commit`, with the name of an event below
and its fields: nothing here runs for a rolled-back write or while a stock row lock is held. Each
committed write becomes one channel-layer message to the sale's group (see live.realtime), carrying
the stock and stock version that the write read under the row lock: a push never comes from a later,
separate read that could interleave with other writes.
"""

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, get_args

from django.db import transaction
from django.utils import timezone

from live import realtime
from sales.models import FlashSale, SaleStatus

if TYPE_CHECKING:
    from sales.purchase import PurchaseResult

Event = Literal[
    "purchase_made",
    "sale_changed",
    "stock_changed",
    "sale_deleted",
    "purchase_confirmed",
    "waitlist_offered",
    "holds_returned",
]
EVENTS: tuple[Event, ...] = get_args(Event)


def send_after_commit(event: Event, **fields: Any) -> None:
    """Send `event` (one of EVENTS) with `fields` once the current transaction commits; at once in
    autocommit. Registered in order, so a writer's events go out in the order it named them.

    Robust: the write is committed by then, so a failing push (Redis down, a query in the event) is
    logged by Django, never turned into an error answer that would invite a client to retry it.
    """
    if event not in EVENTS:
        # Here, in the writer's own request or test, not silently after its commit.
        raise ValueError(f"unknown real-time event {event!r}")

    # A named function, not a partial: Django's robust error path reads __qualname__. The event
    # is looked up when it is sent, so a test can replace it.
    def send():
        globals()[event](**fields)

    transaction.on_commit(send, robust=True)


def stock_changed(*, sale_id: int, current_stock: int, stock_version: int) -> None:
    """The sale's stock is now `current_stock` as of `stock_version` (a staff edit or restock)."""
    sale = FlashSale.objects.filter(pk=sale_id).first()
    payload = {
        "stock": realtime.stock_message(sale_id=sale_id, current_stock=current_stock, stock_version=stock_version)
    }
    if sale is not None:
        # A restock can bring a sold-out sale back to life; staff writes are rare, so the extra read
        # (for the window only, never for the stock) is cheap.
        payload["status"] = realtime.status_message(sale_id=sale_id, status=_status(sale, current_stock))
    realtime.broadcast(realtime.sale_group(sale_id), realtime.SALE_EVENT, payload)
    if sale is not None:
        realtime.announce_featured()


def sale_changed(*, sale_id: int) -> None:
    """The sale's window or other settings were edited (or it was created, ended, paused or resumed)."""
    sale = FlashSale.objects.filter(pk=sale_id).first()
    if sale is None:
        return
    snapshot = realtime.snapshot_message(sale)
    payload = {"snapshot": snapshot, "status": realtime.status_message(sale_id=sale_id, status=snapshot["status"])}
    realtime.broadcast(realtime.sale_group(sale_id), realtime.SALE_EVENT, payload)
    realtime.announce_featured()


def purchase_made(*, result: "PurchaseResult", user_name: str, stock_version: int) -> None:
    """A purchase was committed, leaving the sale's stock at `result.remaining_stock` as of `stock_version`."""
    sale_id = result.sale_id
    payload = {
        "stock": realtime.stock_message(
            sale_id=sale_id, current_stock=result.remaining_stock, stock_version=stock_version
        ),
    }
    # A held purchase takes stock but is on the leaderboard only once it is confirmed.
    if result.status == "confirmed":
        payload["purchase"] = realtime.purchase_message(
            sale_id=sale_id, user_name=user_name, quantity=result.quantity, timestamp=result.timestamp
        )
    else:
        payload["held"] = realtime.held_message(sale_id=sale_id)
    sold_out = result.remaining_stock == 0
    if sold_out:
        payload["status"] = realtime.status_message(sale_id=sale_id, status=SaleStatus.COMPLETED)
    realtime.broadcast(realtime.sale_group(sale_id), realtime.SALE_EVENT, payload)
    if sold_out:
        realtime.announce_featured()


def purchase_confirmed(*, sale_id: int, user_name: str, quantity: int, timestamp: datetime) -> None:
    """A held purchase was confirmed: it joins the leaderboard (at the time it was made)."""
    message = realtime.purchase_message(sale_id=sale_id, user_name=user_name, quantity=quantity, timestamp=timestamp)
    payload = {"purchase": message, "held": realtime.held_message(sale_id=sale_id)}
    realtime.broadcast(realtime.sale_group(sale_id), realtime.SALE_EVENT, payload)


def holds_returned(*, sale_id: int) -> None:
    """Held units went back to the sale (released or expired): the held part of the stock bar shrinks."""
    realtime.broadcast(
        realtime.sale_group(sale_id), realtime.SALE_EVENT, {"held": realtime.held_message(sale_id=sale_id)}
    )


def waitlist_offered(*, sale_id: int, purchase_id: int, user_name: str, expires_at: datetime | None) -> None:
    """The sale clock gave the next waiting buyer a hold in their name: their page offers to confirm it."""
    offer = {
        "type": "offer",
        "saleId": sale_id,
        "purchaseId": purchase_id,
        "userName": user_name,
        "expiresAt": realtime.iso(expires_at) if expires_at else None,
    }
    realtime.broadcast(realtime.sale_group(sale_id), realtime.SALE_EVENT, {"offer": offer})


def sale_deleted(*, sale_id: int) -> None:
    """The sale is gone (only one that never sold can be deleted): home pages move to another sale.

    A page open on that sale alone hears nothing now; its next reconnect is refused with 4404.
    """
    realtime.announce_featured()


def sale_window_passed(*, sale: FlashSale, moment: datetime) -> None:
    """The clock reached a sale's start or end at `moment` (called by `manage.py runsaleclock`)."""
    status = sale.status_at(moment)
    realtime.broadcast(
        realtime.sale_group(sale.pk),
        realtime.SALE_EVENT,
        {"status": realtime.status_message(sale_id=sale.pk, status=status)},
    )


def _status(sale: FlashSale, current_stock: int) -> str:
    sale.current_stock = current_stock
    return sale.status_at(timezone.now())
