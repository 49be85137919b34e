"""`@idempotent`: honour an optional Idempotency-Key header on an APIView handler."""

import json
from functools import wraps

from django.db import transaction
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from core.errors import ServiceError, error_body
from idempotency import services
from idempotency.exceptions import IdempotencyError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


def _is_stored(status_code: int) -> bool:
    """Results of requests that ran are kept; refusals before running are not.

    400 (bad input), 401/403 (auth), 429 (rate limit) and 5xx (outages, bugs) say nothing about
    the request's effect, so the client may fix the cause and retry under the same key. A business
    answer such as 409 sold_out is the result of the attempt and is replayed, as Stripe does.
    """
    return 200 <= status_code < 300 or status_code in {404, 409, 410, 422}


def _render(data) -> str:
    return JSONRenderer().render(data).decode()


def idempotent(*, scope: str):
    """Decorate `post(self, request)` of an authenticated APIView.

    Without the header the handler runs as before (no extra queries). With it: the first request
    runs the handler inside one transaction that also stores the result under the key; later
    requests with the same key and body get that result with `Idempotent-Replayed: true`.
    The key record keeps the id of the row the handler says it created (`success(..., created_id=)`),
    so the app that owns the row can check that it exists (auditsales does).
    """

    def decorator(handler):
        @wraps(handler)
        def wrapped(view, request, *args, **kwargs):
            raw_key = request.headers.get(HEADER)
            if raw_key is None:
                return handler(view, request, *args, **kwargs)
            key = services.validate_key(raw_key)
            services.check_key_quota(user=request.user, key=key)
            # A request that names its target in the path (a purchase's /confirm) is that path and body.
            payload = {"body": request.data, "path": kwargs} if kwargs else request.data
            outcome = services.claim(
                user=request.user, key=key, request_fingerprint=services.fingerprint(scope, payload)
            )
            if isinstance(outcome, services.Replay):
                return Response(json.loads(outcome.body), status=outcome.status_code, headers={REPLAYED_HEADER: "true"})
            try:
                with transaction.atomic():
                    response = handler(view, request, *args, **kwargs)
                    if _is_stored(response.status_code):
                        services.complete(
                            outcome,
                            status_code=response.status_code,
                            body=_render(response.data),
                            created_id=getattr(response, "created_id", None),
                        )
            except IdempotencyError:
                raise  # the lock was lost: nothing of ours is stored or committed
            except ServiceError as error:
                # The work rolled back; the refusal itself is the result to replay.
                if _is_stored(error.code.status):
                    services.complete(
                        outcome,
                        status_code=error.code.status,
                        body=_render(error_body(error.code, error.message, error.details)),
                    )
                else:
                    services.release(outcome)
                raise
            except BaseException:
                services.release(outcome)
                raise
            if not _is_stored(response.status_code):
                services.release(outcome)
            return response

        return wrapped

    return decorator
