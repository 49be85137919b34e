from django.db.models import Sum

from sales.models import FlashSale, Purchase


def assert_invariant(sale_id: int, cap: int = 5) -> tuple[FlashSale, int]:
    """Stock is never negative, original − current == Σ quantities of held and confirmed purchases,
    no user above `cap` in those.

    Written independently of sales.audit so the tests do not check the code with itself.
    Returns the sale as stored and the units sold.
    """
    sale = FlashSale.objects.get(pk=sale_id)
    taking = Purchase.objects.filter(sale_id=sale_id, status__in=["held", "confirmed"])
    sold = taking.aggregate(units=Sum("quantity"))["units"] or 0
    assert sale.current_stock >= 0
    assert sale.original_stock - sale.current_stock == sold
    per_user = taking.values("user").annotate(units=Sum("quantity"))
    assert all(row["units"] <= cap for row in per_user)
    return sale, sold
