"""What the rest of the system is told after a sale's state is committed.

One function per event, with typed, keyword-only, plain-value arguments: a writer calls it inside
its transaction and it registers the send with `transaction.on_commit(..., robust=True)` (zulip's
`send_event_on_commit` is the model). A mistyped event or field fails in the writer's own request
or test, never as a log line after the commit; nothing here runs for a rolled-back write or while a
stock row lock is held; a writer's events go out in the order it called them. Each committed write
becomes one channel-layer message to the sale's group (see live.realtime), carrying the stock and
stock version that the write read under the row lock: a push never comes from a later, separate read that
could interleave with other writes.

Robust: the write is committed by then, so a failing push (Redis down, a query in the push) is
logged by Django, never turned into an error answer that would invite a client to retry it. The
`push_*` functions send at once; each is looked up when the commit runs, so a test can replace it.
"""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from live import realtime
from sales import selectors
from sales.models import SaleStatus

# --- what writers call (inside their transaction) ------------------------------------------------


def purchase_made(
    *,
    sale_id: int,
    remaining_stock: int,
    quantity: int,
    timestamp: datetime,
    user_name: str,
    stock_version: int,
    held: bool = False,
) -> None:
    """A purchase of `quantity` was committed, leaving the sale's stock at `remaining_stock` as of
    `stock_version`; `held` when it is a hold, on the leaderboard only once confirmed."""
    transaction.on_commit(
        lambda: push_purchase_made(
            sale_id=sale_id,
            remaining_stock=remaining_stock,
            quantity=quantity,
            timestamp=timestamp,
            user_name=user_name,
            stock_version=stock_version,
            held=held,
        ),
        robust=True,
    )


def stock_changed(*, sale_id: int, current_stock: int, stock_version: int) -> None:
    """The sale's stock is now `current_stock` as of `stock_version` (a staff edit or restock)."""
    transaction.on_commit(
        lambda: push_stock_changed(sale_id=sale_id, current_stock=current_stock, stock_version=stock_version),
        robust=True,
    )


def sale_changed(*, sale_id: int) -> None:
    """The sale's window or other settings were edited (or it was created, ended, paused or resumed)."""
    transaction.on_commit(lambda: push_sale_changed(sale_id=sale_id), robust=True)


def sale_deleted(*, sale_id: int) -> None:
    """The sale is gone (only one that never sold can be deleted)."""
    transaction.on_commit(lambda: push_sale_deleted(sale_id=sale_id), robust=True)


def purchase_confirmed(*, sale_id: int, user_name: str, quantity: int, timestamp: datetime) -> None:
    """A held purchase was confirmed: it joins the leaderboard (at the time it was made)."""
    transaction.on_commit(
        lambda: push_purchase_confirmed(sale_id=sale_id, user_name=user_name, quantity=quantity, timestamp=timestamp),
        robust=True,
    )


def holds_returned(*, sale_id: int) -> None:
    """Held units went back to the sale (released or expired)."""
    transaction.on_commit(lambda: push_holds_returned(sale_id=sale_id), robust=True)


def waitlist_offered(*, sale_id: int, purchase_id: int, user_name: str, expires_at: datetime | None) -> None:
    """The sale clock gave the next waiting buyer a hold in their name."""
    transaction.on_commit(
        lambda: push_waitlist_offered(
            sale_id=sale_id, purchase_id=purchase_id, user_name=user_name, expires_at=expires_at
        ),
        robust=True,
    )


def sale_window_passed(*, sale_id: int, status: str) -> None:
    """The clock reached a sale's start or end, leaving it in `status` (`manage.py runsaleclock`)."""
    transaction.on_commit(lambda: push_sale_window_passed(sale_id=sale_id, status=status), robust=True)


def queue_advanced(*, sale_id: int, admitted_through: int, admit_per_second: int, queue_length: int) -> None:
    """A waiting room's line moved: admitted through `admitted_through`, `queue_length` places
    taken, admitting `admit_per_second` a second (live.queue_news says when it is worth telling)."""
    transaction.on_commit(
        lambda: push_queue_advanced(
            sale_id=sale_id,
            admitted_through=admitted_through,
            admit_per_second=admit_per_second,
            queue_length=queue_length,
        ),
        robust=True,
    )


def queue_closed(*, sale_id: int, reason: str) -> None:
    """A waiting room admits no one any more (`reason`: realtime.QUEUE_ENDED or QUEUE_SOLD_OUT)."""
    transaction.on_commit(lambda: push_queue_closed(sale_id=sale_id, reason=reason), robust=True)


# --- the sends, after the commit -----------------------------------------------------------------


def push_purchase_made(
    *,
    sale_id: int,
    remaining_stock: int,
    quantity: int,
    timestamp: datetime,
    user_name: str,
    stock_version: int,
    held: bool = False,
) -> None:
    payload = {
        "stock": realtime.stock_message(sale_id=sale_id, current_stock=remaining_stock, stock_version=stock_version),
    }
    # A held purchase takes stock but is on the leaderboard only once it is confirmed.
    if held:
        payload["held"] = realtime.held_message(sale_id=sale_id)
    else:
        payload["purchase"] = realtime.purchase_message(
            sale_id=sale_id, user_name=user_name, quantity=quantity, timestamp=timestamp
        )
    sold_out = remaining_stock == 0
    if sold_out:
        payload["status"] = realtime.status_message(sale_id=sale_id, status=SaleStatus.COMPLETED)
        # Once per sell-out, not per purchase: the read that says whether a line waits for this sale.
        if selectors.has_waiting_room(sale_id):
            payload["queueClosed"] = realtime.queue_closed_message(sale_id=sale_id, reason=realtime.QUEUE_SOLD_OUT)
    realtime.broadcast(realtime.sale_group(sale_id), realtime.SALE_EVENT, payload)
    if sold_out:
        realtime.announce_featured()


def push_stock_changed(*, sale_id: int, current_stock: int, stock_version: int) -> None:
    sale = selectors.find_sale(sale_id)
    payload = {
        "stock": realtime.stock_message(sale_id=sale_id, current_stock=current_stock, stock_version=stock_version)
    }
    if sale is not None:
        # A restock can bring a sold-out sale back to life; staff writes are rare, so the extra read
        # (for the window only, never for the stock) is cheap.
        sale.current_stock = current_stock
        now = timezone.now()
        status = sale.status_at(now)
        payload["status"] = realtime.status_message(sale_id=sale_id, status=status)
        # A stock edit down to the units sold closes a waiting room (a restock reopens it: status active).
        reason = realtime.queue_closing_reason(sale, now)
        if reason is not None:
            payload["queueClosed"] = realtime.queue_closed_message(sale_id=sale_id, reason=reason)
    realtime.broadcast(realtime.sale_group(sale_id), realtime.SALE_EVENT, payload)
    if sale is not None:
        realtime.announce_featured()


def push_sale_changed(*, sale_id: int) -> None:
    sale = selectors.find_sale(sale_id)
    if sale is None:
        return
    now = timezone.now()
    snapshot = realtime.snapshot_message(sale, now)
    payload = {"snapshot": snapshot, "status": realtime.status_message(sale_id=sale_id, status=snapshot["status"])}
    # Ended by staff (or edited after it closed: the hub tells each socket once).
    reason = realtime.queue_closing_reason(sale, now)
    if reason is not None:
        payload["queueClosed"] = realtime.queue_closed_message(sale_id=sale_id, reason=reason)
    realtime.broadcast(realtime.sale_group(sale_id), realtime.SALE_EVENT, payload)
    realtime.announce_featured()


def push_sale_deleted(*, sale_id: int) -> None:
    """Home pages move to another sale. A page open on that sale alone hears nothing now; its next
    reconnect is refused with 4404."""
    realtime.announce_featured()


def push_purchase_confirmed(*, sale_id: int, user_name: str, quantity: int, timestamp: datetime) -> None:
    message = realtime.purchase_message(sale_id=sale_id, user_name=user_name, quantity=quantity, timestamp=timestamp)
    payload = {"purchase": message, "held": realtime.held_message(sale_id=sale_id)}
    realtime.broadcast(realtime.sale_group(sale_id), realtime.SALE_EVENT, payload)


def push_holds_returned(*, sale_id: int) -> None:
    """The held part of the stock bar shrinks."""
    realtime.broadcast(
        realtime.sale_group(sale_id), realtime.SALE_EVENT, {"held": realtime.held_message(sale_id=sale_id)}
    )


def push_waitlist_offered(*, sale_id: int, purchase_id: int, user_name: str, expires_at: datetime | None) -> None:
    """The buyer's page offers to confirm it."""
    offer = realtime.offer_message(sale_id=sale_id, purchase_id=purchase_id, user_name=user_name, expires_at=expires_at)
    realtime.broadcast(realtime.sale_group(sale_id), realtime.SALE_EVENT, {"offer": offer})


def push_sale_window_passed(*, sale_id: int, status: str) -> None:
    realtime.broadcast(
        realtime.sale_group(sale_id),
        realtime.SALE_EVENT,
        {"status": realtime.status_message(sale_id=sale_id, status=status)},
    )


def push_queue_advanced(*, sale_id: int, admitted_through: int, admit_per_second: int, queue_length: int) -> None:
    message = realtime.queue_advanced_message(
        sale_id=sale_id, admitted_through=admitted_through, admit_per_second=admit_per_second, queue_length=queue_length
    )
    realtime.broadcast(realtime.sale_group(sale_id), realtime.SALE_EVENT, {"queueAdvanced": message})


def push_queue_closed(*, sale_id: int, reason: str) -> None:
    message = realtime.queue_closed_message(sale_id=sale_id, reason=reason)
    realtime.broadcast(realtime.sale_group(sale_id), realtime.SALE_EVENT, {"queueClosed": message})
