"""Refusals the sale gate already knows, answered before Django's sessions and DRF's dispatch.

After a sale sells out (or before it starts) nearly every request of the herd is a refusal the
gate can give from the cache. Through the full stack each one pays for DRF's request wrapping,
content negotiation, authentication, the serializer and three cache round trips (token, rate
limit, gate). Here a plain keyless purchase whose token is cached is answered from one cache read
of the token and the gate together, plus the purchase rate limit's counter, with the same status
and body as the full path.

Anything this middleware is not sure of goes down the full path unchanged: another method or
path, an Idempotency-Key (its answer must be stored), a body or token that is not plainly valid
(the full path names the error), a token not in the cache, the cache unreachable, or no refusal.
"""

import json

from django.core.cache import cache
from django.http import HttpResponse
from django.utils import timezone

from accounts.authentication import (
    plausible_token,
    remember_user_id,
    token_cache_key,
    user_from_cache_entry,
    user_id_of,
)
from core import prefetch
from core.errors import json_error_for
from core.ratelimit import RateLimited, check_rate, planned_counter
from sales import gate, metrics, purchase

MAX_PLAIN_BODY = 1024


class GatedPurchaseRefusalMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and request.path_info in purchase.purchase_paths():
            answer = self._refusal_from_the_gate(request)
            if answer is not None:
                return answer
        return self.get_response(request)

    def _refusal_from_the_gate(self, request) -> HttpResponse | None:
        if "HTTP_IDEMPOTENCY_KEY" in request.META:
            return None
        plain = _plain_purchase(request)
        if plain is None:
            return None
        key, sale_id, quantity = plain
        token_key = token_cache_key(key)
        # Read with the request's other keys at its start (core.prefetch), or here.
        found = prefetch.cached_many([token_key, *gate.cache_keys(sale_id)])
        if found is None:
            try:
                found = cache.get_many([token_key, *gate.cache_keys(sale_id)])
            except Exception:
                return None  # the full path logs the outage and asks the database
        user = user_from_cache_entry(found.get(token_key))
        if user is None or not user.is_active:
            return None
        remember_user_id(key, user.pk)
        refusal = purchase.gated_refusal(found, sale_id=sale_id, moment=timezone.now())
        if refusal is None:
            return None
        # The same limit the full path counts (sales.api.PurchaseView), keyed by this user.
        request.user = user
        try:
            check_rate(request, group="purchase", key="user", rate_setting="RATELIMIT_PURCHASE")
        except RateLimited as limited:
            return self._answered(request, json_error_for(limited))
        return self._answered(request, json_error_for(refusal))

    @staticmethod
    def _answered(request, response: HttpResponse) -> HttpResponse:
        # Before URL resolution: the route is named for core.metrics, the outcome counted here.
        request.route_label = metrics.purchase_route()
        metrics.count_purchase(response)
        return response


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
    if meta.get("CONTENT_TYPE", "").split(";")[0].strip() != "application/json":
        return None
    key = plausible_token(meta.get("HTTP_AUTHORIZATION", ""))
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
    plan.reads.extend(gate.cache_keys(sale_id))
    user_id = user_id_of(key)
    if user_id is not None:
        counter = planned_counter(
            request,
            group="purchase",
            key="user",
            rate_setting="RATELIMIT_PURCHASE",
            value=str(user_id),
            only_if=token_cache_key(key),
        )
        if counter is not None:
            plan.counters.append(counter)


def _plain_order(body: bytes) -> tuple[int, int] | None:
    """(saleId, quantity) when the body is exactly what the API's serializer would accept, else None
    (the full path names the error)."""
    try:
        order = purchase.parse_order(json.loads(body))
    except ValueError:  # not JSON, or purchase.InvalidOrder
        return None
    return order.sale_id, order.quantity
