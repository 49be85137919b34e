"""A waiting room's joins and place reads answered before DRF's dispatch, as DRF's view answers them.

When a waiting-room sale opens, joining is the herd's request, and every buyer in line reads their
place now and then. Through DRF each pays for request wrapping, content negotiation, the
authentication classes, permission checks and the serializers around one or two statements
(docs/performance.md "Waiting room"). Here a plain join (`POST .../queue` without a body, or with
`{}`) and a place read (`GET .../queue`) take the token's user from the request's one cache read
(core.prefetch; on a miss, DRF's own token authentication reads the database and caches it), count
the view's rate limits, call the waiting room's seam (sales.queue.join and place_of, the functions
the view calls) and render the view's answer: its envelope and serializer, the error shape of
core.errors, DRF's JSON renderer and DRF's `Allow`. The middleware sits innermost, so every other
middleware treats its answer as DRF's.

Anything it is not sure of goes down the full path unchanged: another method or path, a body other
than none or `{}` (a proof of work's solution is the view's to read), a query string, an Accept
header DRF would negotiate, a token that is not plainly valid, an Idempotency-Key.
"""

import functools
import re

from django.http import HttpResponse
from django.urls import resolve, reverse
from django.utils import timezone
from rest_framework.utils import json as drf_json

from accounts.authentication import active_user_for, counted_while_cached, user_id_of
from core import prefetch
from core.errors import json_error_for_failure
from core.ids import MAX_ID
from core.ratelimit import check_rate, planned_counter
from core.responses import allowed_methods
from sales import api, line_cache, queue
from sales.fastpath import plain_json, plain_token, rendered

# The view's rate limits on a join, in the order its decorators check them.
JOIN_LIMITS = (
    {"group": "queue", "key": "user", "rate_setting": "RATELIMIT_PURCHASE"},
    {"group": "queue_ip", "key": "ip", "rate_setting": "RATELIMIT_QUEUE_JOIN_IP"},
)
_QUEUE_ROUTE = "flashsale-join-queue"


class QueueFastPathMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        answer = self._answer(request)
        return answer if answer is not None else self.get_response(request)

    def _answer(self, request) -> HttpResponse | None:
        plain = _plain_queue_request(request)
        if plain is None:
            return None
        key, sale_id = plain
        user = active_user_for(key)
        if user is None:
            return None
        # What DRF's authentication sets, for the rate limits and the layers outside (the request log).
        request.user = user
        try:
            if request.method == "POST":
                for limit in JOIN_LIMITS:
                    check_rate(request, **limit)
                place = queue.join(user=user, sale_id=sale_id)
            else:
                place = _place_read(token=key, sale_id=sale_id) or _place_from_database(user, key, sale_id)
        except Exception as failure:
            return _answered(request, json_error_for_failure(failure))
        return _answered(request, rendered(api.queue_place_answer(place, joining=request.method == "POST")))


def _place_read(*, token: str, sale_id: int) -> queue.PlaceView | None:
    """A waiting place from what the request's one round trip read (sales.line_cache), else None."""
    found = prefetch.cached_many(line_cache.cache_keys(sale_id, token))
    if found is None:
        return None  # not read (the cache unreachable, or without Redis)
    return line_cache.cached_place(found, sale_id=sale_id, token=token, moment=timezone.now())


def _place_from_database(user, token: str, sale_id: int) -> queue.PlaceView:
    place = queue.place_of(user=user, sale_id=sale_id)
    if place.status == queue.QueueStatus.WAITING:
        # The next reads of a place the line has not reached come from the cache.
        line_cache.remember_place(sale_id=sale_id, token=token, position=place.position)
    return place


def _answered(request, response: HttpResponse) -> HttpResponse:
    # DRF adds Allow to every answer of the view.
    response["Allow"] = _allowed_methods()
    # Before URL resolution: core.metrics takes the route's label from here.
    request.route_label = _route()
    return response


@functools.cache
def _queue_path() -> re.Pattern[str]:
    """The queue's path with the sale's id captured, and its optional trailing slash."""
    prefix = reverse(_QUEUE_ROUTE, kwargs={"pk": 1}).rstrip("/").removesuffix("/1/queue")
    return re.compile(re.escape(prefix) + r"/([0-9]+)/queue/?")


def _sale_id_of(path: str) -> int | None:
    match = _queue_path().fullmatch(path)
    if match is None:
        return None
    sale_id = int(match.group(1))
    return sale_id if sale_id <= MAX_ID else None  # the view explains ids out of range


@functools.cache
def _route() -> str:
    return resolve(reverse(_QUEUE_ROUTE, kwargs={"pk": 1})).route


@functools.cache
def _allowed_methods() -> str:
    return allowed_methods(reverse(_QUEUE_ROUTE, kwargs={"pk": 1}))


def _plain_queue_request(request) -> tuple[str, int] | None:
    """(token key, sale id) of a join or place read this middleware may answer, else None. Used
    before anything validated the request: it must not raise. Worked out once per request: the
    prefetch planner and the middleware both ask."""
    if "_plain_queue_request" not in request.__dict__:
        request._plain_queue_request = _read_plain_queue_request(request)
    return request._plain_queue_request


def _read_plain_queue_request(request) -> tuple[str, int] | None:
    if request.method not in ("POST", "GET") or "HTTP_IDEMPOTENCY_KEY" in request.META:
        return None
    sale_id = _sale_id_of(request.path_info)
    if sale_id is None:
        return None
    key = plain_token(request)
    if key is None:
        return None
    if request.method == "POST" and not _empty_join_body(request):
        return None
    return key, sale_id


def _empty_join_body(request) -> bool:
    """Whether the join's body is none or `{}`: what the view's serializer reads as a join without
    a proof of work."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length == "0":
        return True  # DRF reads no body as no data, whatever its content type
    if not length.isdigit() or int(length) > 64:
        return False
    if not plain_json(request):
        return False
    try:
        return drf_json.loads(request.body.decode("utf-8")) == {}
    except Exception:  # not UTF-8 or not JSON: the view names the error
        return False


@prefetch.planner
def _plan_queue(request, plan: prefetch.Plan) -> None:
    """A place read reads its cached place and line (sales.line_cache) with the token's entry. A
    plain join counts the view's rate limits with the token's read, only while the token is cached
    (a request DRF will authenticate; an unknown token counts nothing, as with the view), the
    per-user one only for a token this process has seen (its user). Counted together, a join the
    per-user limit refuses also counts against its address, where the view's decorators stop at the
    first: an attempt from that address all the same."""
    plain = _plain_queue_request(request)
    if plain is None:
        return
    key, sale_id = plain
    if request.method == "GET":
        plan.reads.extend(line_cache.cache_keys(sale_id, key))
        return
    user_id = user_id_of(key)
    for limit in JOIN_LIMITS:
        if limit["key"] == "user" and user_id is None:
            continue
        value = str(user_id) if limit["key"] == "user" else None
        counter = planned_counter(request, **limit, value=value, only_if=counted_while_cached(key, plan))
        if counter is not None:
            plan.counters.append(counter)
