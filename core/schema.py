"""The OpenAPI description of the API's envelope and error shape, for drf-spectacular.

Views describe themselves with `@extend_schema(request=..., responses={**ok(...), **errors(...)})`:

    responses={**ok(201, "Purchase", PurchaseResultSerializer),
               **errors(SaleNotFound, SoldOut, ErrorCode.VALIDATION_ERROR)}

`ok` wraps the payload in the success envelope {success: true, message, data}; `errors` documents the
error shape {success: false, error: {code, message, details}} once per status, with the codes that
endpoint can answer as an enum. The hooks below strip the optional trailing slash from paths and add
the answers every API request but the health probes can get (429 from the global per-IP limit, 503
when the database is down).
"""

from collections import defaultdict
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema_field, extend_schema_serializer, inline_serializer
from rest_framework import serializers

from core.error_codes import ErrorCode
from core.errors import ServiceError

# What `errors` documents: a code DRF, middleware or the exception handler answers with, or a
# ServiceError subclass (its code, with its own default message).
Documented = ErrorCode | type[ServiceError]

# The failures any endpoint that reads a JSON body can answer with.
BODY = (
    ErrorCode.VALIDATION_ERROR,
    ErrorCode.REQUEST_TIMEOUT,
    ErrorCode.PAYLOAD_TOO_LARGE,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
)
# Any endpoint behind token authentication.
TOKEN = (ErrorCode.NOT_AUTHENTICATED, ErrorCode.AUTHENTICATION_FAILED)
# Staff-only endpoints.
STAFF = (*TOKEN, ErrorCode.PERMISSION_DENIED)
# Every /api/ request, added to each operation by `postprocess_schema`, except the probes (this tag).
EVERYWHERE = (ErrorCode.RATE_LIMITED, ErrorCode.SERVICE_UNAVAILABLE)
PROBES = "health"

RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}}
}


def error_schema(codes: list[ErrorCode]) -> dict[str, Any]:
    """The one error shape, with `code` restricted to `codes`."""
    return {
        "type": "object",
        "required": ["success", "error"],
        "properties": {
            "success": {"type": "boolean", "enum": [False]},
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {"type": "string", "enum": sorted(code.value for code in codes)},
                    "message": {"type": "string"},
                    "details": {
                        "type": "object",
                        "additionalProperties": True,
                        "description": (
                            "Context for the error; for validation_error, each field mapped to its messages."
                        ),
                    },
                },
            },
        },
    }


def _described(error: Documented) -> tuple[ErrorCode, str]:
    if isinstance(error, ErrorCode):
        return error, error.message
    if isinstance(error, type) and issubclass(error, ServiceError):
        return error.code, error.default_message
    raise TypeError(f"not an error: {error!r}")


def errors(*errors_: Documented | tuple[Documented, ...]) -> dict[int, OpenApiResponse]:
    """Error responses for `errors_` (codes, ServiceError subclasses, or tuples of them), one per status."""
    by_status: dict[int, dict[ErrorCode, str]] = defaultdict(dict)
    for error in errors_:
        for one in error if isinstance(error, tuple) else (error,):
            code, message = _described(one)
            by_status[code.status][code] = message
    return {
        status: OpenApiResponse(
            response=error_schema(list(codes)),
            description="\n".join(_line(code, message) for code, message in sorted(codes.items())),
        )
        for status, codes in sorted(by_status.items())
    }


@extend_schema_field({"type": "boolean", "enum": [True]})
class _TrueField(serializers.BooleanField):
    """`success` of the success envelope: always true."""


@extend_schema_field({"type": "object", "maxProperties": 0})
class _EmptyObject(serializers.DictField):
    """`data` when there is nothing to return: {}."""


def ok(
    status: int, name: str, data, *, message: str = "", paginated: bool = False, extra: dict | None = None
) -> dict[int, OpenApiResponse]:
    """The success envelope {success: true, message, data} around `data` (a serializer, or None for {}).

    `extra` adds top-level fields beside the pagination counts (e.g. the leaderboard's nextAfter)."""
    fields: dict[str, serializers.Field] = {
        "success": _TrueField(),
        "message": serializers.CharField(),
    }
    if paginated:
        fields["count"] = serializers.IntegerField(min_value=0, help_text="Items across all pages.")
        fields["page"] = serializers.IntegerField(min_value=1)
        fields["limit"] = serializers.IntegerField(min_value=1)
    fields.update(extra or {})
    fields["data"] = data() if isinstance(data, type) else (data if data is not None else _EmptyObject())
    shape = (type(fields["data"]), paginated, tuple(extra or ()))
    # One component per name: several operations answering with the same envelope share it.
    if name not in _ENVELOPES:
        envelope = inline_serializer(name=name, fields=fields)
        # An envelope is one object even on list actions, where drf-spectacular would wrap it in an array.
        extend_schema_serializer(many=False)(type(envelope))
        _ENVELOPES[name] = (envelope, shape)
    envelope, declared_shape = _ENVELOPES[name]
    if declared_shape != shape:
        raise ValueError(f"envelope {name!r} is already declared with another shape")
    return {status: OpenApiResponse(response=envelope, description=message)}


_ENVELOPES: dict[str, tuple[serializers.Serializer, tuple[type, bool, tuple[str, ...]]]] = {}


def page_of(name: str, key: str, item) -> serializers.Serializer:
    """`data` of a paginated list: {<key>: [item, ...]}."""
    return inline_serializer(name=name, fields={key: item(many=True)})


# --- hooks ----------------------------------------------------------------------------------


def preprocess_endpoints(endpoints):
    """Document paths without the optional trailing slash, as clients of the old API call them."""
    cleaned = []
    for path, path_regex, method, callback in endpoints:
        if path.startswith("/api/v1/") and path.endswith("/"):
            path = path.rstrip("/")
        cleaned.append((path, path_regex, method, callback))
    return cleaned


def _error_response(code: ErrorCode, description: str = "") -> dict[str, Any]:
    return {
        "description": description or _line(code, code.message),
        "content": {"application/json": {"schema": error_schema([code])}},
    }


def _line(code: ErrorCode, message: str) -> str:
    return f"- `{code}`: {message}"


def _add_error(responses: dict, code: ErrorCode) -> None:
    """Merge `code` into an operation's documented responses, creating the status if needed."""
    status = str(code.status)
    if status not in responses:
        responses[status] = _error_response(code)
        return
    enum = responses[status]["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"]
    if code not in enum["enum"]:
        enum["enum"] = sorted([*enum["enum"], code.value])
        lines = [*responses[status]["description"].split("\n"), _line(code, code.message)]
        responses[status]["description"] = "\n".join(sorted(lines))


_METHODS = {"get", "post", "put", "patch", "delete"}


def postprocess_schema(result, generator, request, public):
    """Add what every API operation shares."""
    for item in result.get("paths", {}).values():
        operations = [operation for method, operation in item.items() if method in _METHODS]
        for operation in operations:
            if PROBES in operation.get("tags", ()):
                continue  # never rate limited (core.middleware); readiness documents its own 503
            responses = operation.setdefault("responses", {})
            for error in EVERYWHERE:
                _add_error(responses, error)
            responses["429"].setdefault("headers", RETRY_AFTER)
            for parameter in operation.get("parameters", []):
                # Router lookups match [0-9]+: integer ids. One that matches no sale is 404
                # sale_not_found; a value that is not a decimal number matches no URL: 404 not_found.
                if parameter.get("in") == "path" and parameter.get("schema", {}).get("pattern") == "^[0-9]+$":
                    parameter["schema"] = {"type": "integer", "minimum": 0}
                    _add_error(responses, ErrorCode.NOT_FOUND)

    result["paths"] = dict(sorted(result.setdefault("paths", {}).items()))

    components = result.setdefault("components", {})
    # ApiHostMiddleware refuses a Host outside ALLOWED_HOSTS on every /api/ path, before any view:
    # a property of the deployment, not of an operation, so it is documented once, as a shared response.
    components.setdefault("responses", {})["BadHost"] = _error_response(
        ErrorCode.BAD_REQUEST, "Any request under /api/ whose Host header is not in ALLOWED_HOSTS: `bad_request`."
    )
    schemes = components.setdefault("securitySchemes", {})
    if "tokenAuth" in schemes:
        schemes["tokenAuth"]["description"] = (
            'Send "Authorization: Token <key>" with the token from POST /api/v1/auth/login. Logout deletes it. '
            'In Swagger UI\'s Authorize box, paste the token alone: the UI adds the "Token " prefix.'
        )
    return result
