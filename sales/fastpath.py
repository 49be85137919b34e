"""Plain purchases answered before DRF's dispatch, with the answer DRF's view gives.

The herd is nearly all plain purchases: a known token, `{"saleId": n, "quantity": 1}` as JSON, no
Idempotency-Key. Through DRF each pays for request wrapping, content negotiation, authentication
classes, permission checks and two serializers (docs/performance.md "DRF's share of a purchase").
Here such a purchase is answered from the request's one cache read of its token and the sale gate
(core.prefetch): the gate's refusal if it knows one, else the purchase limit's count and the
purchase itself (sales.purchase, the same seam the view calls), rendered as the view renders it
(`sales.api.purchase_created`, the error shape of core.errors, DRF's JSON renderer, DRF's `Allow`).
The middleware sits innermost, so every other middleware treats its answer as DRF's.

Anything this middleware is not sure of goes down the full path unchanged: another method or
path, an Idempotency-Key (its answer must be stored), a query string, an Accept header other than
none, `*/*` or `application/json` (DRF negotiates those), a body or token that is not plainly valid
as DRF's parser and serializer read it (the full path names the error), a token DRF refuses, or
the cache unreachable. A token whose cache entry expired is read from the database here, as DRF's
authentication reads it, so a herd's first request of each buyer stays on this path.
"""

import functools
import time

from django.core.cache import cache
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.utils import json as drf_json

from accounts.authentication import (
    active_user_for,
    counted_while_cached,
    keep_near,
    near_user,
    plausible_token,
    remember_user_id,
    token_cache_key,
    user_from_cache_entry,
    user_id_of,
)
from core import prefetch
from core.errors import json_error_for_failure
from core.ratelimit import check_rate, planned_counter
from core.responses import allowed_methods
from sales import api, gate, metrics, purchase

MAX_PLAIN_BODY = 1024


class PlainPurchaseMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and request.path_info in purchase.purchase_paths():
            answer = self._answer(request)
            if answer is not None:
                return answer
        return self.get_response(request)

    def _answer(self, request) -> HttpResponse | None:
        if "HTTP_IDEMPOTENCY_KEY" in request.META:
            return None
        plain = _plain_purchase(request)
        if plain is None:
            return None
        key, sale_id, quantity = plain
        moment = timezone.now()
        # What this process already knows (core.near_cache), then the rest as the cache holds it:
        # read with the request's other keys at its start (core.prefetch), or here.
        user = near_user(key)
        known = gate.known_here(sale_id)
        refusal = purchase.gated_refusal(known, sale_id=sale_id, moment=moment) if known is not None else None
        token_key = token_cache_key(key)
        keys = ([] if user is not None else [token_key]) + ([] if refusal is not None else gate.cache_keys(sale_id))
        if keys:
            found = prefetch.cached_many(keys)
            read_at = prefetch.read_at()
            if found is None or read_at is None:
                read_at = time.monotonic()
                try:
                    found = cache.get_many(keys)
                except Exception:
                    return None  # the full path logs the outage and asks the database
            if user is None:
                keep_near(key, found.get(token_key), read_at=read_at)
                user = user_from_cache_entry(found.get(token_key))
                if user is None:
                    # Not cached (its entry expired: a herd's first request of each buyer): read
                    # from the database as DRF's authentication would, and cached for the next.
                    user = active_user_for(key, not_cached=True)
            if refusal is None:
                known = gate.known_in(found, sale_id=sale_id, read_at=read_at)
                refusal = purchase.gated_refusal(known, sale_id=sale_id, moment=moment)
        if user is None or not user.is_active:
            return None
        remember_user_id(key, user.pk)
        # What DRF's authentication sets, for the layers outside (the request log, the refusal tally).
        request.user = user
        try:
            # The view's order: the purchase limit (keyed by this user) first, then the rule.
            check_rate(request, group="purchase", key="user", rate_setting="RATELIMIT_PURCHASE")
            if refusal is not None:
                raise refusal
            result = purchase.purchase(user=user, sale_id=sale_id, quantity=quantity)
        except Exception as failure:
            return self._answered(request, json_error_for_failure(failure))
        return self._answered(request, rendered(api.purchase_created(result)))

    @staticmethod
    def _answered(request, response: HttpResponse) -> HttpResponse:
        # DRF adds Allow to every answer of the view.
        response["Allow"] = _allowed_methods()
        # Before URL resolution: the route is named for core.metrics, the outcome counted here.
        request.route_label = metrics.purchase_route()
        metrics.count_purchase(response)
        return response


def rendered(answer: Response) -> HttpResponse:
    """`answer` as DRF renders it for a request that accepts JSON without parameters."""
    return HttpResponse(JSONRenderer().render(answer.data), status=answer.status_code, content_type="application/json")


@functools.cache
def _allowed_methods() -> str:
    return allowed_methods(reverse("purchase"))


# Accept headers for which DRF's negotiation picks its JSON renderer with no parameters (no indent).
_PLAIN_ACCEPT = frozenset({"", "*/*", "application/json"})
# Content types (spaces removed, lower case) whose body DRF's parser decodes as UTF-8.
_PLAIN_JSON = frozenset({"application/json", "application/json;charset=utf-8"})


def _plain_purchase(request) -> tuple[str, int, int] | None:
    """(token key, saleId, quantity) of a POST to the purchase whose token and body are plainly
    valid, else None. Used before anything validated the request: it must not raise. Worked out once
    per request: the prefetch planner and the middleware both ask."""
    if "_plain_purchase" not in request.__dict__:
        request._plain_purchase = _read_plain_purchase(request)
    return request._plain_purchase


def _read_plain_purchase(request) -> tuple[str, int, int] | None:
    if request.method != "POST" or request.path_info not in purchase.purchase_paths():
        return None
    meta = request.META
    # A small, declared body only: reading an oversized one here would leave the full path
    # (which answers 413) without it.
    if not (meta.get("CONTENT_LENGTH") or "").isdigit() or int(meta["CONTENT_LENGTH"]) > MAX_PLAIN_BODY:
        return None
    if not plain_json(request):
        return None
    key = plain_token(request)
    if key is None:
        return None
    try:
        order = _plain_order(request.body)
    except Exception:  # an unreadable body: the full path answers it
        return None
    if order is None:
        return None
    return key, *order


@prefetch.planner
def _plan_purchase(request, plan: prefetch.Plan) -> None:
    """A plain purchase reads the sale gate and counts the purchase limit with the token's read,
    the limit only while the token is cached and only for a token this process has seen (its user)."""
    plain = _plain_purchase(request)
    if plain is None:
        return
    key, sale_id, _ = plain
    # A refusal this process's copy of the gate names needs no read (core.near_cache).
    if purchase.refused_by(gate.known_here(sale_id), sale_id=sale_id, moment=timezone.now()) is None:
        plan.reads.extend(gate.cache_keys(sale_id))
    user_id = user_id_of(key)
    if user_id is not None:
        counter = planned_counter(
            request,
            group="purchase",
            key="user",
            rate_setting="RATELIMIT_PURCHASE",
            value=str(user_id),
            only_if=counted_while_cached(key, plan),
        )
        if counter is not None:
            plan.counters.append(counter)


def plain_token(request) -> str | None:
    """The token key of an API request whose answer DRF would render as plain JSON (no query string:
    `?format=` is DRF's negotiation, as is an Accept header other than none, `*/*` or JSON) and whose
    `Authorization` plainly holds a token, else None."""
    meta = request.META
    if meta.get("QUERY_STRING") or meta.get("HTTP_ACCEPT", "").strip() not in _PLAIN_ACCEPT:
        return None
    return plausible_token(meta.get("HTTP_AUTHORIZATION", ""))


def plain_json(request) -> bool:
    """Whether the request's body is declared as JSON that DRF's parser decodes as UTF-8 (the
    declared charset, UTF-8 when none is declared)."""
    return request.META.get("CONTENT_TYPE", "").replace(" ", "").lower() in _PLAIN_JSON


def _plain_order(body: bytes) -> tuple[int, int] | None:
    """(saleId, quantity) when the body is exactly what the API's parser and serializer would
    accept, else None (the full path names the error)."""
    try:
        # As DRF's JSONParser reads it: UTF-8, strictly, and no NaN or Infinity.
        order = purchase.parse_order(drf_json.loads(body.decode("utf-8")))
    except ValueError:  # not UTF-8, not JSON, or purchase.InvalidOrder
        return None
    return order.sale_id, order.quantity
