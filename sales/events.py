"""What the rest of the system is told after a sale's state is committed.

Services call these from `transaction.on_commit`, so nothing here runs for a rolled-back write or
while a stock row lock is held. The real-time layer (WebSocket pushes) plugs in here.
"""

from sales.models import Purchase


def stock_changed(*, sale_id: int, current_stock: int, version: int) -> None:
    """The sale's stock is now `current_stock` as of `version`."""


def sale_changed(*, sale_id: int) -> None:
    """The sale's window or other settings were edited."""


def purchase_made(*, purchase: Purchase, current_stock: int, version: int) -> None:
    """A purchase was committed, leaving `current_stock` at `version`."""
