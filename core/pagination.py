"""Page/limit pagination with strict query validation (bad values are a 400, not a silent default)."""

from rest_framework import serializers


class PageQuerySerializer(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, max_value=1_000_000, default=1)
    limit = serializers.IntegerField(min_value=1, max_value=100, default=50)


def paginate(queryset, *, page: int, limit: int) -> tuple[int, list]:
    """The total count and the rows of one page."""
    offset = (page - 1) * limit
    return queryset.count(), list(queryset[offset : offset + limit])
