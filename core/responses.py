"""The success envelope every API endpoint answers with: {"success": true, "message", "data"}."""

from typing import Any

from django.urls import resolve
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


def allowed_methods(path: str) -> str:
    """The `Allow` header DRF answers with for the view at `path`, for a layer that answers before
    the view: the view's methods (a viewset's as its route maps them), HEAD wherever there is GET (as
    Django's View.setup and DRF's ViewSetMixin add it) and OPTIONS."""
    view: Any = resolve(path).func  # DRF's as_view() records the class, its arguments and any actions
    handler = view.cls(**view.initkwargs)
    for method, action in getattr(view, "actions", {}).items():
        setattr(handler, method, getattr(handler, action))
    if hasattr(handler, "get") and not hasattr(handler, "head"):
        handler.head = handler.get
    return ", ".join(handler.allowed_methods)
