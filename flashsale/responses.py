"""The success envelope every API endpoint answers with: {"success": true, "message", "data"}."""

from typing import Any

from rest_framework.response import Response


def success(data: Any, message: str, *, status: int = 200, **top_level: Any) -> Response:
    """Wrap `data` in the envelope. `top_level` adds siblings of data, e.g. pagination counts."""
    return Response({"success": True, "message": message, **top_level, "data": data}, status=status)
