"""The liveness probe is answered before DRF (core.health.LivenessMiddleware) with exactly the
answer its DRF view gives, whatever the request says; other methods and paths reach DRF."""

import contextlib
from unittest import mock

import pytest
from django.test import Client
from django.urls import resolve

from core.health import Liveness, LivenessMiddleware

HEALTH = "/api/v1/health"


@contextlib.contextmanager
def through_drf():
    """The middleware steps aside: the request reaches the Liveness view."""
    with mock.patch.object(LivenessMiddleware, "__call__", lambda self, request: self.get_response(request)):
        yield


def received(response) -> tuple:
    """Everything a client receives (headers in their order)."""
    return response.status_code, list(response.items()), response.content


@pytest.mark.parametrize(
    "request_",
    [
        {"method": "GET"},
        {"method": "HEAD"},
        {"method": "GET", "HTTP_ACCEPT": "text/html"},
        {"method": "GET", "HTTP_ACCEPT": "application/json; indent=4"},
        {"method": "GET", "query": "?format=xml"},
        {"method": "GET", "HTTP_AUTHORIZATION": "Token " + "0" * 40},
        {"method": "GET", "HTTP_ORIGIN": "https://elsewhere.example"},
    ],
    ids=["get", "head", "accept-html", "accept-indent", "format-query", "unknown-token", "cross-origin"],
)
def test_the_liveness_probe_never_reaches_drf_and_answers_byte_for_byte_as_drf(request_):
    request_ = dict(request_)
    method, path = request_.pop("method"), HEALTH + request_.pop("query", "")
    client = Client()
    resolve(HEALTH)  # the URLconf is imported before the view's dispatch is replaced
    with mock.patch.object(Liveness, "dispatch", side_effect=AssertionError("reached DRF")):
        fast = client.generic(method, path, **request_)
    with through_drf():
        drf = client.generic(method, path, **request_)

    assert fast.status_code == 200
    assert received(fast) == received(drf)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_on_the_liveness_probe_reach_drf(method):
    resolve(HEALTH)
    with mock.patch.object(Liveness, "dispatch", autospec=True, side_effect=Liveness.dispatch) as dispatch:
        response = Client().generic(method, HEALTH)

    assert dispatch.called
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", [HEALTH + "/", HEALTH + "z", HEALTH + "/more"])
def test_paths_that_only_start_like_the_probe_are_answered_as_before(path):
    with through_drf():
        before = Client().get(path)
    response = Client().get(path)

    assert response.status_code == 404
    assert received(response) == received(before)


@pytest.mark.django_db
def test_the_readiness_probe_is_not_answered_as_liveness():
    response = Client().get(HEALTH + "/ready")

    assert response.json()["data"]["status"] == "ready"


@pytest.mark.parametrize(
    "request_",
    [{"method": "GET"}, {"method": "HEAD"}, {"method": "GET", "secure": True}, {"method": "GET", "HTTP_COOKIE": "a=b"}],
    ids=["get", "head", "https", "cookie"],
)
def test_a_repeated_probe_is_answered_byte_for_byte_as_drf_answers_it(request_):
    # The first answer of a kind is made by the middleware below the probe's; later ones replay it.
    request_ = dict(request_)
    method = request_.pop("method")
    client = Client()
    resolve(HEALTH)
    with mock.patch.object(Liveness, "dispatch", side_effect=AssertionError("reached DRF")):
        first, again = client.generic(method, HEALTH, **request_), client.generic(method, HEALTH, **request_)
    with through_drf():
        drf = client.generic(method, HEALTH, **request_)

    assert received(first) == received(again) == received(drf)


@pytest.mark.parametrize("setting", ["SECURE_HSTS_SECONDS", "X_FRAME_OPTIONS"])
def test_the_probe_answers_with_the_middleware_below_it_as_configured(settings, setting):
    # Middleware read their settings when the handler builds them; a new client builds a new one.
    if setting == "SECURE_HSTS_SECONDS":
        settings.SECURE_HSTS_SECONDS = 3600
        header, expected = "Strict-Transport-Security", "max-age=3600"
    else:
        settings.X_FRAME_OPTIONS = "SAMEORIGIN"
        header, expected = "X-Frame-Options", "SAMEORIGIN"
    client = Client()
    answers = [client.get(HEALTH, secure=True) for _ in range(2)]
    with through_drf():
        drf = client.get(HEALTH, secure=True)

    assert [answer[header] for answer in answers] == [expected, expected]
    assert received(answers[1]) == received(drf)
