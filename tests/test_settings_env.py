"""The environment reader of the settings (core/env.py): django-environ, strict where a typo matters."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.env import Env


def reader(**variables: str) -> Env:
    env = Env()
    env.ENVIRON = variables
    return env


@pytest.mark.parametrize("typo", ["flase", "ture", "2", "disabled"])
def test_a_boolean_that_does_not_parse_is_refused_naming_the_variable_not_read_as_false(typo):
    with pytest.raises(ImproperlyConfigured, match=f"RATELIMIT_ENABLE must be true or false, not '{typo}'"):
        reader(RATELIMIT_ENABLE=typo).bool("RATELIMIT_ENABLE", default=True)


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("YES", True), (" on ", True), ("0", False), ("off", False)]
)
def test_booleans_read_the_usual_words_in_any_case(raw, expected):
    assert reader(HTTPS=raw).bool("HTTPS", default=not expected) is expected


def test_an_integer_that_does_not_parse_is_refused_naming_the_variable():
    with pytest.raises(ImproperlyConfigured, match="DB_POOL_MAX_SIZE must be an integer, not 'twenty'"):
        reader(DB_POOL_MAX_SIZE="twenty").int("DB_POOL_MAX_SIZE", default=20)


def test_an_empty_boolean_or_integer_keeps_the_default_and_an_unset_one_too():
    env = reader(DEBUG="", DB_POOL_MAX_SIZE="")
    assert env.bool("DEBUG", default=True) is True
    assert env.int("DB_POOL_MAX_SIZE", default=20) == 20
    assert env.int("DB_POOL_MIN_SIZE", default=2) == 2
    assert env.int("DB_POOL_TIMEOUT", default=10) == 10


def test_a_value_starting_with_a_dollar_is_taken_as_it_is_not_as_another_variables_name():
    secret = "$ECRET" + "k" * 60
    env = reader(SECRET_KEY=secret, ECRET="k" * 60 + "other")
    assert env.str("SECRET_KEY") == secret


def test_a_list_drops_blanks_around_items_and_empty_items_and_an_empty_value_is_an_empty_list():
    env = reader(ALLOWED_HOSTS=" a.example, b.example,, ", CORS_ALLOWED_ORIGINS="")
    assert env.list("ALLOWED_HOSTS", default=["localhost"]) == ["a.example", "b.example"]
    assert env.list("CORS_ALLOWED_ORIGINS", default=["x"]) == []
    assert env.list("CSRF_TRUSTED_ORIGINS", default=["x"]) == ["x"]


def test_a_variable_without_default_that_is_not_set_is_refused():
    with pytest.raises(ImproperlyConfigured, match="Set the WEB_CONCURRENCY environment variable"):
        reader().int("WEB_CONCURRENCY")
