"""The OpenAPI description of the API's envelope and error shape, for drf-spectacular.

Views describe themselves with `@extend_schema(request=..., responses={**ok(...), **errors(...)})`:

    responses={**ok(201, "Purchase", PurchaseResultSerializer), **errors(SaleNotFound, SoldOut, VALIDATION)}

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

from flashsale.errors import ServiceError


class FrameworkError:
    """An error code raised by DRF, middleware or the exception handler rather than by a service."""

    def __init__(self, status_code: int, code: str, message: str):
        self.status_code, self.code, self.default_message = status_code, code, message


VALIDATION = FrameworkError(
    400, "validation_error", "Missing or invalid fields, a body that is not a JSON object, or malformed JSON."
)
NOT_AUTHENTICATED = FrameworkError(401, "not_authenticated", "No Authorization header.")
AUTHENTICATION_FAILED = FrameworkError(401, "authentication_failed", "A malformed, unknown or deleted token.")
PERMISSION_DENIED = FrameworkError(403, "permission_denied", "The user is not staff.")
NOT_FOUND = FrameworkError(404, "not_found", "No such path, e.g. an id that is not a decimal number.")
PAYLOAD_TOO_LARGE = FrameworkError(413, "payload_too_large", "The body is over 1 MiB.")
UNSUPPORTED_MEDIA_TYPE = FrameworkError(415, "unsupported_media_type", "The body is not application/json.")
RATE_LIMITED = FrameworkError(429, "rate_limited", "Over a rate limit; wait Retry-After seconds.")
SERVICE_UNAVAILABLE = FrameworkError(503, "service_unavailable", "The database cannot be reached.")

# The failures any endpoint that reads a JSON body can answer with.
BODY = (VALIDATION, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE)
# Any endpoint behind token authentication.
TOKEN = (NOT_AUTHENTICATED, AUTHENTICATION_FAILED)
# Staff-only endpoints.
STAFF = (*TOKEN, PERMISSION_DENIED)
# Every /api/ request, added to each operation by `postprocess_schema`, except the probes (this tag).
EVERYWHERE = (RATE_LIMITED, SERVICE_UNAVAILABLE)
PROBES = "health"

RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}}
}


def error_schema(codes: list[str]) -> dict[str, Any]:
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
                    "code": {"type": "string", "enum": sorted(codes)},
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


def _described(error) -> tuple[int, str, str]:
    if isinstance(error, FrameworkError) or (isinstance(error, type) and issubclass(error, ServiceError)):
        return error.status_code, error.code, error.default_message
    raise TypeError(f"not an error: {error!r}")


def errors(*errors_) -> dict[int, OpenApiResponse]:
    """Error responses for `errors_` (ServiceError subclasses or FrameworkErrors), one per status."""
    by_status: dict[int, dict[str, str]] = defaultdict(dict)
    for error in errors_:
        if isinstance(error, (tuple, list)):
            for inner in error:
                status, code, message = _described(inner)
                by_status[status][code] = message
            continue
        status, code, message = _described(error)
        by_status[status][code] = message
    return {
        status: OpenApiResponse(
            response=error_schema(list(codes)),
            description="\n".join(f"- `{code}`: {message}" for code, message in sorted(codes.items())),
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


_ENVELOPES: dict[str, tuple[serializers.Serializer, tuple[type, bool]]] = {}


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


def _add_error(responses: dict, error: FrameworkError) -> None:
    """Merge `error` into an operation's documented responses, creating the status if needed."""
    status = str(error.status_code)
    line = f"- `{error.code}`: {error.default_message}"
    if status not in responses:
        responses[status] = {
            "description": line,
            "content": {"application/json": {"schema": error_schema([error.code])}},
        }
        return
    code = responses[status]["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"]
    if error.code not in code["enum"]:
        code["enum"] = sorted([*code["enum"], error.code])
        responses[status]["description"] = "\n".join(sorted([*responses[status]["description"].split("\n"), line]))


_METHODS = {"get", "post", "put", "patch", "delete"}


def postprocess_schema(result, generator, request, public):
    """Add what every API operation shares."""
    for item in result.get("paths", {}).values():
        operations = [operation for method, operation in item.items() if method in _METHODS]
        for operation in operations:
            if PROBES in operation.get("tags", ()):
                continue  # never rate limited (flashsale.middleware); readiness documents its own 503
            responses = operation.setdefault("responses", {})
            for error in EVERYWHERE:
                _add_error(responses, error)
            responses["429"].setdefault("headers", RETRY_AFTER)
            for parameter in operation.get("parameters", []):
                # Router lookups match [0-9]+: integer ids. One that matches no sale is 404
                # sale_not_found; a value that is not a decimal number matches no URL: 404 not_found.
                if parameter.get("in") == "path" and parameter.get("schema", {}).get("pattern") == "^[0-9]+$":
                    parameter["schema"] = {"type": "integer", "minimum": 0}
                    _add_error(responses, NOT_FOUND)

    result["paths"] = dict(sorted(result.setdefault("paths", {}).items()))

    schemes = result.setdefault("components", {}).setdefault("securitySchemes", {})
    if "tokenAuth" in schemes:
        schemes["tokenAuth"]["description"] = (
            'Send "Authorization: Token <key>" with the token from POST /api/v1/auth/login. Logout deletes it.'
        )
    return result
