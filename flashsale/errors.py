"""The one error shape of the API, and the DRF exception handler that renders every failure in it.

    {"success": false, "error": {"code": "...", "message": "...", "details": {...}}}

Services raise `ServiceError` subclasses (each app keeps its own in `<app>/exceptions.py`); they
know their HTTP status and stable code but nothing about DRF.
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from flashsale.ratelimit import RateLimited

logger = logging.getLogger("flashsale.errors")


class ServiceError(Exception):
    """A business rule said no. Subclasses set `status_code`, `code` and a default message."""

    status_code = 400
    code = "error"
    default_message = "The request could not be completed."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None):
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)


class ServiceUnavailable(ServiceError):
    status_code = 503
    code = "service_unavailable"
    default_message = "The service is temporarily unavailable. Please retry shortly."


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"success": False, "error": {"code": code, "message": message, "details": details or {}}}


def error_response(status: int, code: str, message: str, details=None, headers=None) -> Response:
    return Response(error_body(code, message, details), status=status, headers=headers)


def _validation_details(detail) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {field: _flatten(messages) for field, messages in detail.items()}
    # A list of errors not tied to a field, e.g. "expected an object".
    return {"nonFieldErrors": _flatten(detail)}


def _flatten(messages):
    if isinstance(messages, dict):
        return _validation_details(messages)
    if isinstance(messages, list):
        return [_flatten(m) if isinstance(m, (dict, list)) else str(m) for m in messages]
    return [str(messages)]


_DRF_CODES = {
    drf.NotAuthenticated: "not_authenticated",
    drf.AuthenticationFailed: "authentication_failed",
    drf.PermissionDenied: "permission_denied",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.Throttled: "rate_limited",
}


def api_exception_handler(exc, context):
    """Render any exception raised in an API view as the standard error shape."""
    if isinstance(exc, ServiceError):
        return error_response(exc.status_code, exc.code, exc.message, exc.details, getattr(exc, "headers", None))
    if isinstance(exc, RateLimited):
        return rate_limited_response(exc.retry_after)
    if isinstance(exc, drf.ValidationError):
        return error_response(400, "validation_error", "The request is invalid.", _validation_details(exc.detail))
    if isinstance(exc, drf.ParseError):
        return error_response(
            400, "validation_error", "The request body is not valid JSON.", {"body": [str(exc.detail)]}
        )
    if isinstance(exc, RequestDataTooBig):
        return error_response(413, "payload_too_large", "The request body is too large.")
    if isinstance(exc, Http404):
        return error_response(404, "not_found", "Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        return error_response(403, "permission_denied", "You do not have permission to perform this action.")
    if isinstance(exc, drf.APIException):
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), None)
        code = code or (exc.default_code if isinstance(exc.default_code, str) else "error")
        headers = {}
        if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
            view = context.get("view")
            request = context.get("request")
            auth_header = view.get_authenticate_header(request) if view and request else None
            if auth_header:
                headers["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)  # Throttled's, not in djangorestframework-stubs
        if wait:
            headers["Retry-After"] = str(int(wait))
        message = exc.detail if isinstance(exc.detail, str) else str(exc.default_detail)
        return error_response(exc.status_code, code, str(message), headers=headers)
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.error("database unavailable: %s", exc)
        return error_response(503, ServiceUnavailable.code, ServiceUnavailable.default_message)
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
        return error_response(500, "internal_error", "An unexpected error occurred.")
    logger.exception("unhandled error in API view")
    return error_response(500, "internal_error", "An unexpected error occurred.")


def _rate_limited(retry_after: int) -> dict[str, Any]:
    """The 429 answer's parts, shared by the DRF and the plain-Django renderings."""
    return {
        "status": 429,
        "code": "rate_limited",
        "message": "Too many requests. Please slow down.",
        "details": {"retryAfter": retry_after},
        "headers": {"Retry-After": str(retry_after)},
    }


def rate_limited_response(retry_after: int) -> Response:
    return error_response(**_rate_limited(retry_after))


def rate_limited_json(retry_after: int) -> JsonResponse:
    """The same 429 for middleware, which answers before DRF runs."""
    return json_error(**_rate_limited(retry_after))


def bad_host_json() -> JsonResponse:
    # The Host is not echoed: it is the client's text, and the fix is on the client's side.
    return json_error(400, "bad_request", "The Host header names a host this server does not serve.")


def json_error(status: int, code: str, message: str, details=None, headers=None) -> JsonResponse:
    """The same error shape for plain Django views and middleware, outside DRF."""
    response = JsonResponse(error_body(code, message, details), status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response
