from django.db.models import QuerySet

from sales.models import Purchase


def chronological_purchases(*, sale_id: int | None = None) -> QuerySet[Purchase]:
    """Successful purchases, oldest first, ties broken by id."""
    purchases = Purchase.objects.select_related("user").only(
        "id", "sale_id", "quantity", "created_at", "user__name"
    )
    if sale_id is not None:
        purchases = purchases.filter(sale_id=sale_id)
    return purchases.order_by("created_at", "id")
