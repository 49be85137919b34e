"""The one error shape of the API, and the DRF exception handler that renders every failure in it.

    {"success": false, "error": {"code": "...", "message": "...", "details": {...}}}

Codes, their statuses and default messages live in `core.error_codes.ErrorCode`. Services raise
`ServiceError` subclasses (each app keeps its own in `<app>/exceptions.py`), which name a code and
know nothing about DRF or HTTP beyond it.
"""

import logging
import math
import re
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpResponse, UnreadablePostError
from rest_framework import exceptions as drf
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.error_codes import ErrorCode

logger = logging.getLogger("flashsale.errors")

Details = dict[str, Any]


class ServiceError(Exception):
    """A business rule said no. Subclasses name their `code`; its status and message come with it.

    A subclass may set `default_message` to say more than the code's message for the same code.
    Raising a base class (no code of its own) is a bug, and answers as one.
    """

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    default_message: str = ErrorCode.INTERNAL_ERROR.message
    # Seconds the client should wait before retrying, sent as Retry-After; see RateLimited.
    retry_after: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__ and "default_message" not in cls.__dict__:
            cls.default_message = cls.code.message

    def __init__(self, message: str | None = None, *, details: Details | None = None):
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)


class RateLimited(ServiceError):
    """Over a limit: 429 with `Retry-After` and `details.retryAfter`, in whole seconds (at least 1).

    Every 429 the API answers is one of these (subclasses name another code), so its two waits
    always agree, through DRF or middleware.
    """

    code = ErrorCode.RATE_LIMITED

    def __init__(self, retry_after: int, *, details: Details | None = None):
        self.retry_after = max(1, retry_after)
        super().__init__(details={**(details or {}), "retryAfter": self.retry_after})


def error_body(code: ErrorCode, message: str | None = None, details: Details | None = None) -> Details:
    return {
        "success": False,
        "error": {"code": code.value, "message": message or code.message, "details": details or {}},
    }


def json_error(
    code: ErrorCode, message: str | None = None, details: Details | None = None, *, retry_after: int | None = None
) -> HttpResponse:
    """The error shape for plain Django views and middleware, which answer outside DRF.

    Rendered by DRF's JSON renderer, so the bytes are the same as a DRF view's answer."""
    response = HttpResponse(
        JSONRenderer().render(error_body(code, message, details)), status=code.status, content_type="application/json"
    )
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    response.error_code = code  # type: ignore[attr-defined]  # for the metrics and the request log
    return response


def json_error_for(error: ServiceError) -> HttpResponse:
    return json_error(error.code, error.message, error.details, retry_after=error.retry_after)


def json_error_for_failure(failure: Exception) -> HttpResponse:
    """What `api_exception_handler` answers for `failure` raised by a service (a ServiceError, a
    database outage, a bug, logged the same way), for middleware that calls the service outside DRF.
    Anything DRF would answer otherwise (its own exceptions, Http404) is raised again."""
    if isinstance(failure, ServiceError):
        return json_error_for(failure)
    converted = _for_drf(failure)
    if not isinstance(converted, ApiError):
        raise failure
    code = _REGISTERED[str(converted.get_codes())]  # an ApiError's code is a registered one
    return json_error(code, str(converted.detail), converted.details, retry_after=converted.wait)


class ApiError(drf.APIException):
    """A registered error in the form DRF's handler renders: the code's status, `Retry-After` from `wait`."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        details: Details | None = None,
        *,
        retry_after: int | None = None,
    ):
        super().__init__(message or code.message, code.value)
        self.status_code = code.status
        self.details = details or {}
        self.wait = retry_after


def body_not_received(error: UnreadablePostError) -> HttpResponse:
    """408 `request_timeout` for a body that stopped arriving, from middleware that reads it."""
    log_body_not_received(error)
    return json_error(ErrorCode.REQUEST_TIMEOUT)


def log_body_not_received(error: UnreadablePostError) -> None:
    """One line, no traceback: the server's socket read timed out (or the client went away) in the
    middle of the body, which a slow or hostile client does at will; the stack says nothing more."""
    cause: BaseException = error
    while isinstance(cause, UnreadablePostError) and cause.__cause__ is not None:
        cause = cause.__cause__  # Django wraps the socket's error, and request.body wraps read()'s again
    logger.warning("request body not received in full: %s", type(cause).__name__)


_NOT_JSON = "The request body is not valid JSON."


def _validation_details(detail: Any) -> Details:
    if isinstance(detail, dict):
        # Keys are the API's own spelling at every depth: DRF names errors not tied to a field
        # "non_field_errors" (a body that is a list, a serializer's validate()), and a list field
        # keys its items' errors by index.
        return {camel_case(field): _flatten(messages) for field, messages in detail.items()}
    # A list of errors not tied to a field, e.g. "expected an object".
    return {"nonFieldErrors": _flatten(detail)}


def camel_case(key: Any) -> str:
    """`non_field_errors` -> `nonFieldErrors`; a key already in camelCase, or an index, stays as it is."""
    return _SNAKE_JOINT.sub(lambda joint: joint.group(1).upper(), str(key))


_SNAKE_JOINT = re.compile(r"(?<=[A-Za-z0-9])_+([A-Za-z0-9])")


def _flatten(messages: Any) -> Any:
    if isinstance(messages, dict):
        return _validation_details(messages)
    if isinstance(messages, list):
        return [_flatten(m) if isinstance(m, (dict, list)) else str(m) for m in messages]
    return [str(messages)]


def _for_drf(exc: Exception) -> Exception:
    """`exc` as something DRF's handler renders: DRF's exceptions, Http404 and Django's
    PermissionDenied as they are, anything else as an ApiError."""
    if isinstance(exc, ServiceError):
        return ApiError(exc.code, exc.message, exc.details, retry_after=exc.retry_after)
    if isinstance(exc, drf.ParseError):
        return ApiError(ErrorCode.VALIDATION_ERROR, _NOT_JSON, {"body": [str(exc.detail)]})
    if isinstance(exc, drf.ValidationError):
        return ApiError(ErrorCode.VALIDATION_ERROR, details=_validation_details(exc.detail))
    if isinstance(exc, drf.Throttled):
        # DRF's throttles are not configured; should one be, it answers like every other 429.
        wait = getattr(exc, "wait", None)  # Throttled's, not in djangorestframework-stubs
        return _for_drf(RateLimited(math.ceil(wait or 1)))
    if isinstance(exc, (drf.APIException, Http404, DjangoPermissionDenied)):
        return exc
    if isinstance(exc, RequestDataTooBig):
        return ApiError(ErrorCode.PAYLOAD_TOO_LARGE)
    if isinstance(exc, UnreadablePostError):
        log_body_not_received(exc)
        return ApiError(ErrorCode.REQUEST_TIMEOUT)
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.error("database unavailable: %s", exc)
        return ApiError(ErrorCode.SERVICE_UNAVAILABLE)
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
    else:
        logger.exception("unhandled error in API view")
    return ApiError(ErrorCode.INTERNAL_ERROR)


_REGISTERED = {code.value: code for code in ErrorCode}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render any exception raised in an API view as the standard error shape.

    DRF's own handler answers first (status, WWW-Authenticate, Retry-After, rolling back an atomic
    request; Http404 and PermissionDenied become DRF's); this only reshapes its body.
    """
    exc = _for_drf(exc)
    response = drf_exception_handler(exc, context)
    if response is None:  # not reached: _for_drf hands DRF only what it renders
        return None
    # {"detail": ErrorDetail} for all but ValidationError, which _for_drf converted.
    detail = response.data["detail"]
    code = _REGISTERED.get(detail.code)
    if code is None:
        # A DRF exception raised with a code of its own: clients only ever see registered codes.
        logger.error("unregistered error code %r: %s", detail.code, detail)
        response.status_code = ErrorCode.INTERNAL_ERROR.status
        response.data = error_body(ErrorCode.INTERNAL_ERROR)
        response.error_code = ErrorCode.INTERNAL_ERROR  # type: ignore[attr-defined]
        return response
    response.data = error_body(code, str(detail), getattr(exc, "details", None))
    response.error_code = code  # type: ignore[attr-defined]  # the outcome, for metrics and the log
    return response


def error_code_of(response: HttpResponse) -> ErrorCode | None:
    """The registered code a response answered with, as the code that built it recorded it; None for
    a success or a response built elsewhere. Never read from the rendered body."""
    return getattr(response, "error_code", None)
