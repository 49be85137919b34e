"""The success envelope every API endpoint answers with: {"success": true, "message", "data"}."""

from typing import Any

from rest_framework.response import Response


class SuccessResponse(Response):
    created_id: int | None = None


def success(
    data: Any, message: str, *, status: int = 200, created_id: int | None = None, **top_level: Any
) -> SuccessResponse:
    """Wrap `data` in the envelope. `top_level` adds siblings of data, e.g. pagination counts.

    `created_id` names the row the request created, for layers that record it (the idempotency
    key stores it) without reading it back out of the body.
    """
    response = SuccessResponse({"success": True, "message": message, **top_level, "data": data}, status=status)
    response.created_id = created_id
    return response
