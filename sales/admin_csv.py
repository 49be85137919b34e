"""CSV export of purchases, streamed so that a sale with millions of purchases never sits in memory."""

import csv
from itertools import islice

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import StreamingHttpResponse

COLUMNS = (
    ("purchase_id", "id"),
    ("sale_id", "sale_id"),
    ("sale_name", "sale__name"),
    ("user_id", "user_id"),
    ("user_email", "user__email"),
    ("user_name", "user__name"),
    ("quantity", "quantity"),
    ("created_at", "created_at"),
    ("status", "status"),
    ("expires_at", "expires_at"),
    ("confirmed_at", "confirmed_at"),
    ("released_at", "released_at"),
)
CHUNK_SIZE = 2000

# A spreadsheet runs a cell that starts with one of these as a formula; names and emails are user
# input, so such cells are prefixed with a quote (OWASP "CSV injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    """A file-like object whose write() hands the formatted line back instead of storing it."""

    def write(self, value: str) -> str:
        return value


def _cell(value):
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_STARTS) else value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _line(writer, row) -> str:
    return writer.writerow([_cell(value) for value in row])


def _rows(queryset: QuerySet):
    return queryset.values_list(*(lookup for _, lookup in COLUMNS))


def _sync_lines(queryset: QuerySet):
    writer = csv.writer(_Echo())
    yield _line(writer, [header for header, _ in COLUMNS])
    for row in _rows(queryset).iterator(chunk_size=CHUNK_SIZE):
        yield _line(writer, row)


async def _async_lines(queryset: QuerySet):
    # Not QuerySet.aiterator(): for values_list() it runs the query in the event loop's thread and
    # fails (SynchronousOnlyOperation). The database work stays in Django's thread for this request.
    rows = _rows(queryset).iterator(chunk_size=CHUNK_SIZE)  # a generator: nothing runs yet
    next_chunk = sync_to_async(lambda: list(islice(rows, CHUNK_SIZE)), thread_sensitive=True)
    writer = csv.writer(_Echo())
    yield _line(writer, [header for header, _ in COLUMNS])
    try:
        while chunk := await next_chunk():
            yield "".join(_line(writer, row) for row in chunk)
    finally:
        # A client that disconnects mid-download must not leave the cursor open.
        await sync_to_async(rows.close, thread_sensitive=True)()


def purchases_csv_response(request, queryset: QuerySet, filename: str) -> StreamingHttpResponse:
    """Stream `queryset` (purchases, in its order) as CSV, one chunk of rows fetched at a time.

    Under Daphne (ASGI) Django reads a synchronous streaming iterator into a list before sending
    it, so there the rows come from an asynchronous iterator; a WSGI server (or the test client)
    gets a synchronous one for the same reason the other way round.
    """
    lines = _async_lines(queryset) if isinstance(request, ASGIRequest) else _sync_lines(queryset)
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
