"""Hostile and malformed input: every refusal is a 4xx in the error shape and changes nothing."""

import json

import httpx
import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from harness.servers import daphne_server
from sales.models import FlashSale, Purchase
from tests.conftest import client_for
from tests.error_shape import assert_error_shape
from tests.factories import PASSWORD, SaleFactory, TokenFactory, UserFactory

pytestmark = pytest.mark.django_db

User = get_user_model()

PURCHASE = "/api/v1/flashsales/purchase"
REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
LOGOUT = "/api/v1/auth/logout"
ACTIVE = "/api/v1/flashsales/active"
ONE_MIB = 1024 * 1024


def error_of(response, status: int, code: str) -> dict:
    """The error object, after checking the status and the one error shape."""
    return assert_error_shape(response, status, code)["error"]


def post_raw(client, path: str, body, content_type: str = "application/json"):
    return client.generic("POST", path, body, content_type=content_type)


@pytest.fixture
def sale(db):
    return SaleFactory(original_stock=100)


def assert_nothing_bought(sale):
    sale.refresh_from_db()
    assert Purchase.objects.count() == 0
    assert (sale.current_stock, sale.version) == (100, 1)


# --- oversized bodies ---------------------------------------------------------------------------


def padded(payload: dict, size: int) -> str:
    return json.dumps({**payload, "pad": "x" * size})


@pytest.mark.parametrize("path", [PURCHASE, REGISTER, LOGIN])
def test_a_json_body_over_one_mebibyte_is_413_payload_too_large_and_changes_nothing(buyer_api, sale, path):
    payload = {"saleId": sale.pk, "quantity": 1, "name": "Big", "email": "big@example.com", "password": PASSWORD}

    response = post_raw(buyer_api, path, padded(payload, ONE_MIB + 1))

    error_of(response, 413, "payload_too_large")
    assert_nothing_bought(sale)
    assert not User.objects.filter(email="big@example.com").exists()


def test_a_body_just_under_the_limit_is_parsed(buyer_api, sale):
    response = post_raw(buyer_api, PURCHASE, padded({"saleId": sale.pk, "quantity": 1}, ONE_MIB - 100))

    assert response.status_code == 201  # unknown fields are ignored; the limit is on size only
    assert Purchase.objects.get().quantity == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_live_server_refuses_oversized_bodies_with_and_without_content_length():
    sale = SaleFactory(original_stock=100)
    token = TokenFactory(user=UserFactory())
    body = padded({"saleId": sale.pk, "quantity": 1}, 2 * ONE_MIB).encode()
    headers = {"Authorization": f"Token {token.key}", "Content-Type": "application/json"}

    def chunks():  # Transfer-Encoding: chunked, no Content-Length
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    with daphne_server() as base_url:
        sized = httpx.post(f"{base_url}{PURCHASE}", content=body, headers=headers, timeout=30)
        chunked = httpx.post(f"{base_url}{PURCHASE}", content=chunks(), headers=headers, timeout=30)

    assert sized.status_code == 413, sized.text[:300]
    assert sized.json()["error"]["code"] == "payload_too_large"
    # DRF reads a body only when Content-Length says there is one: a chunked body is never parsed,
    # whatever its size, and the request is refused as missing its fields (see README).
    assert chunked.status_code == 400, chunked.text[:300]
    assert chunked.json()["error"]["code"] == "validation_error"
    assert not Purchase.objects.exists()
    assert FlashSale.objects.get(pk=sale.pk).current_stock == 100


# --- content types and JSON that is not an object ---------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "text/html", "application/jsonx"],
)
def test_a_body_that_is_not_json_is_415_and_changes_nothing(buyer_api, sale, content_type):
    body = json.dumps({"saleId": sale.pk, "quantity": 1})

    error_of(post_raw(buyer_api, PURCHASE, body, content_type), 415, "unsupported_media_type")
    assert_nothing_bought(sale)


def test_json_with_a_charset_parameter_is_accepted(buyer_api, sale):
    body = json.dumps({"saleId": sale.pk, "quantity": 1})

    assert post_raw(buyer_api, PURCHASE, body, "application/json; charset=utf-8").status_code == 201
    assert Purchase.objects.count() == 1


@pytest.mark.parametrize("body", ["[]", "[1, 2]", '"saleId"', "42", "null", "true", '[{"saleId": 1, "quantity": 1}]'])
def test_json_that_is_not_an_object_is_a_400_validation_error(buyer_api, sale, body):
    error = error_of(post_raw(buyer_api, PURCHASE, body), 400, "validation_error")

    assert error["details"]  # says what is wrong
    assert_nothing_bought(sale)


@pytest.mark.parametrize(
    "body",
    [
        '{"saleId": 1, "quantity": 1',  # truncated
        "{'saleId': 1}",  # not JSON quotes
        b"\xff\xfe{\x00",  # not UTF-8
        '{"saleId": 1, "quantity": NaN}',  # not JSON numbers
        '{"saleId": 1, "quantity": Infinity}',
        "[" * 100_000 + "]" * 100_000,  # nested past the decoder's recursion limit: was a 500
        '{"quantity": ' + "9" * 5000 + "}",  # past Python's int-parsing digit limit
    ],
    ids=["truncated", "single-quotes", "not-utf8", "nan", "infinity", "deeply-nested", "5000-digits"],
)
def test_malformed_json_is_a_400_validation_error_never_a_500(buyer_api, sale, body):
    error = error_of(post_raw(buyer_api, PURCHASE, body), 400, "validation_error")

    assert "body" in error["details"]
    assert_nothing_bought(sale)


def test_deeply_nested_json_is_refused_on_every_endpoint_that_reads_a_body(api, buyer_api, staff_api, sale):
    nested = "{" + '"a":{' * 50_000 + "}" * 50_001

    for client, path in [(api, REGISTER), (api, LOGIN), (buyer_api, PURCHASE), (staff_api, "/api/v1/flashsales")]:
        error_of(post_raw(client, path, nested), 400, "validation_error")
    assert_nothing_bought(sale)
    assert FlashSale.objects.count() == 1


# --- quantities and ids -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "quantity",
    [0, -1, -(2**63), 6, 2**31, 2**63, 10**30, 1.5, 1.0, 1e2, "1", "one", "", True, None, [1], {"n": 1}],
    ids=lambda q: repr(q)[:20],
)
def test_a_quantity_that_is_not_an_integer_from_1_to_the_maximum_is_refused(buyer_api, sale, quantity):
    response = buyer_api.post(PURCHASE, {"saleId": sale.pk, "quantity": quantity}, format="json")

    error = error_of(response, 400, "validation_error")
    assert list(error["details"]) == ["quantity"]
    assert_nothing_bought(sale)


@pytest.mark.parametrize("sale_id", [0, -1, 2**63, 10**30, "1", 1.0, None, True])
def test_a_sale_id_that_is_not_a_positive_64_bit_integer_is_refused(buyer_api, sale, sale_id):
    response = buyer_api.post(PURCHASE, {"saleId": sale_id, "quantity": 1}, format="json")

    assert list(error_of(response, 400, "validation_error")["details"]) == ["saleId"]
    assert_nothing_bought(sale)


@pytest.mark.parametrize("sale_id", [2**63 - 1, 2**62])
def test_a_huge_but_valid_sale_id_is_simply_not_found(buyer_api, sale, sale_id):
    response = buyer_api.post(PURCHASE, {"saleId": sale_id, "quantity": 1}, format="json")

    error_of(response, 404, "sale_not_found")
    assert_nothing_bought(sale)


@pytest.mark.parametrize("pk", ["0", "9223372036854775808", "9" * 40])
def test_out_of_range_ids_in_paths_are_404_not_500(staff_api, sale, pk):
    base = f"/api/v1/flashsales/{pk}"

    error_of(staff_api.get(base), 404, "sale_not_found")
    error_of(staff_api.patch(base, {"version": 1, "name": "x"}, format="json"), 404, "sale_not_found")
    error_of(staff_api.post(f"{base}/add-units", {"units": 1}, format="json"), 404, "sale_not_found")
    error_of(staff_api.post(f"{base}/end"), 404, "sale_not_found")
    sale.refresh_from_db()
    assert (sale.original_stock, sale.version) == (100, 1)


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "page=abc",
        "limit=0",
        "limit=101",
        "limit=1e3",
        "saleId=x",
        f"saleId={2**64}",
        "saleId=1%00",
    ],
)
def test_bad_query_parameters_are_400(api, query):
    error = error_of(api.get(f"/api/v1/leaderboard?{query}"), 400, "validation_error")

    assert set(error["details"]) <= {"page", "limit", "saleId"}


# --- names and emails ---------------------------------------------------------------------------------


def register(api, name: str, email: str):
    return api.post(REGISTER, {"name": name, "email": email, "password": PASSWORD}, format="json")


@pytest.mark.parametrize(
    "name",
    # A right-to-left override is refused since issue 25 (tests/test_identity_input.py).
    ["Zoë Ångström", "李小龍", "Ада Лавлейс 🚀", "x" * 150],
    ids=["latin", "cjk", "cyrillic-emoji", "150-chars"],
)
def test_unicode_and_maximum_length_names_are_stored_and_returned_exactly(api, name):
    response = register(api, name, "unicode@example.com")

    assert response.status_code == 201
    assert response.json()["data"]["name"] == name
    assert User.objects.get(email="unicode@example.com").name == name


@pytest.mark.parametrize(
    "name, email, field",
    [
        ("x" * 151, "long-name@example.com", "name"),
        ("Null\x00Byte", "nul@example.com", "name"),
        ("   ", "blank@example.com", "name"),
        ("Long email", "a" * 245 + "@example.com", "email"),
        ("Unicode local part", "zoë@example.com", "email"),
        ("Nul email", "nul\x00@example.com", "email"),
        ("Two ats", "a@b@example.com", "email"),
        ("Header injection", "a@example.com\r\nBcc: victim@example.com", "email"),
    ],
)
def test_names_and_emails_out_of_bounds_are_400_and_create_nothing(api, name, email, field):
    error = error_of(register(api, name, email), 400, "validation_error")

    assert field in error["details"]
    assert not User.objects.exists()


def test_an_internationalised_domain_is_accepted_and_logs_in(api):
    assert register(api, "Bücherwurm", "Leser@Bücher.example").status_code == 201

    login = api.post(LOGIN, {"email": "leser@bücher.example", "password": PASSWORD}, format="json")

    assert login.status_code == 200
    # Stored in IDNA's ASCII form, the one every spelling of the domain normalises to.
    assert User.objects.get().email == "leser@xn--bcher-kva.example"


def test_a_very_long_login_email_or_password_is_400_and_not_checked(api):
    UserFactory(email="ada@example.com")

    long_email = api.post(LOGIN, {"email": "a" * 10_000 + "@example.com", "password": PASSWORD}, format="json")
    long_password = api.post(LOGIN, {"email": "ada@example.com", "password": "p" * 10_000}, format="json")

    assert list(error_of(long_email, 400, "validation_error")["details"]) == ["email"]
    assert list(error_of(long_password, 400, "validation_error")["details"]) == ["password"]
    assert not Token.objects.exists()


HOSTILE_NAMES = [
    "Robert'); DROP TABLE accounts_user;--",
    "' OR '1'='1",
    '<script>alert("x")</script>',
    "<img src=x onerror=alert(1)>",
    "{{ 7*7 }} ${7*7} %s %(name)s",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_sql_and_html_in_names_are_stored_literally_and_returned_as_json_strings(api, name):
    response = register(api, name, "hostile@example.com")
    user = User.objects.get(email="hostile@example.com")
    sale = SaleFactory()
    buyer = client_for(user)
    buyer.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")

    board = api.get(f"/api/v1/leaderboard?saleId={sale.pk}")

    assert response.status_code == 201
    assert user.name == name  # stored literally: parameters, not string-built SQL
    assert User.objects.count() == 1 and Purchase.objects.count() == 1  # the tables survived
    assert board["Content-Type"].startswith("application/json")
    assert [entry["userName"] for entry in board.json()["data"]["purchases"]] == [name]


def test_hostile_names_are_escaped_in_the_admin_user_list(client, staff):
    for number, name in enumerate(HOSTILE_NAMES):
        UserFactory(name=name, email=f"hostile{number}@example.com")
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)

    page = client.get("/admin/accounts/user/").content.decode()

    assert '<script>alert("x")</script>' not in page
    assert "<img src=x onerror" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "Robert&#x27;); DROP TABLE accounts_user;--" in page


# --- tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, code",
    [
        ("Token", "authentication_failed"),  # no key
        ("Token a b", "authentication_failed"),  # spaces
        ("Token " + "f" * 41, "authentication_failed"),  # longer than any key
        ("Token " + "x" * 10_000, "authentication_failed"),
        ("Token abc\x00def", "authentication_failed"),  # NUL: PostgreSQL raised on it (a 500)
        ("Token ключ", "authentication_failed"),  # not latin-1: DRF raised UnicodeEncodeError (a 500)
        ("Token é" + "e" * 39, "authentication_failed"),  # latin-1 but not a key
        ("Token ' OR '1'='1", "authentication_failed"),
        ("Bearer 0123456789abcdef0123456789abcdef01234567", "not_authenticated"),  # other scheme: ignored
        ("Basic YWRhQGV4YW1wbGUuY29tOnB3", "not_authenticated"),
        ("", "not_authenticated"),
    ],
    ids=lambda value: repr(value)[:24],
)
def test_malformed_tokens_are_401_never_500(api, buyer, header, code):
    TokenFactory(user=buyer)

    response = api.get(ACTIVE, HTTP_AUTHORIZATION=header)

    error_of(response, 401, code)
    assert response.has_header("WWW-Authenticate")


def test_the_token_keyword_is_case_insensitive_like_drf(api, buyer):
    SaleFactory()
    token = TokenFactory(user=buyer)

    assert api.get(ACTIVE, HTTP_AUTHORIZATION=f"token {token.key}").status_code == 200


def test_an_unknown_token_of_the_right_format_is_401(api, buyer):
    token = TokenFactory(user=buyer)
    forged = ("0" if token.key[0] != "0" else "1") + token.key[1:]

    error_of(api.get(ACTIVE, HTTP_AUTHORIZATION=f"Token {forged}"), 401, "authentication_failed")


def test_logout_deletes_the_token_and_the_old_token_stops_working(api, buyer, sale):
    login = api.post(LOGIN, {"email": buyer.email, "password": PASSWORD}, format="json")
    key = login.json()["data"]["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get(ACTIVE).status_code == 200  # the cache now knows the token, too

    logout = api.post(LOGOUT)
    after = api.get(ACTIVE)
    purchase = api.post(PURCHASE, {"saleId": sale.pk, "quantity": 1}, format="json")
    again = api.post(LOGOUT)

    assert logout.status_code == 200
    assert logout.json() == {"success": True, "message": "Logged out", "data": {}}
    assert not Token.objects.filter(user=buyer).exists()
    error_of(after, 401, "authentication_failed")
    error_of(purchase, 401, "authentication_failed")
    error_of(again, 401, "authentication_failed")
    assert_nothing_bought(sale)


def test_logging_in_again_after_logout_issues_a_new_token_and_the_old_one_stays_dead(api, buyer):
    SaleFactory()
    first = api.post(LOGIN, {"email": buyer.email, "password": PASSWORD}, format="json").json()["data"]["token"]
    client_with(api, first).post(LOGOUT)

    second = api.post(LOGIN, {"email": buyer.email, "password": PASSWORD}, format="json").json()["data"]["token"]

    assert second != first
    error_of(client_with(api, first).get(ACTIVE), 401, "authentication_failed")
    assert client_with(api, second).get(ACTIVE).status_code == 200


def client_with(api, key: str):
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


def test_logout_without_a_token_is_401_and_deletes_nothing(api, buyer):
    TokenFactory(user=buyer)

    error_of(api.post(LOGOUT), 401, "not_authenticated")
    assert Token.objects.filter(user=buyer).exists()


def test_a_deactivated_users_token_is_refused(api, buyer):
    token = TokenFactory(user=buyer)
    SaleFactory()
    assert client_with(api, token.key).get(ACTIVE).status_code == 200

    buyer.is_active = False
    buyer.save()

    error_of(client_with(api, token.key).get(ACTIVE), 401, "authentication_failed")


# --- login throttling ---------------------------------------------------------------------------


def test_a_throttled_login_is_refused_even_with_the_right_password_and_issues_no_token(api, buyer, settings):
    settings.RATELIMIT_LOGIN_FAILURES = "3/d"
    for _ in range(3):
        api.post(LOGIN, {"email": buyer.email, "password": "wrong-guess"}, format="json", REMOTE_ADDR="10.1.1.1")

    guessed = api.post(LOGIN, {"email": buyer.email, "password": PASSWORD}, format="json", REMOTE_ADDR="10.1.1.1")
    other_account = api.post(
        LOGIN, {"email": "someone-else@example.com", "password": "x"}, format="json", REMOTE_ADDR="10.1.1.1"
    )

    error = error_of(guessed, 429, "rate_limited")
    assert error["details"]["retryAfter"] >= 1
    assert not Token.objects.exists()
    error_of(other_account, 401, "invalid_credentials")  # other accounts are not locked out


def test_the_per_email_login_limit_ignores_case_and_surrounding_spaces(api, buyer, settings):
    settings.RATELIMIT_LOGIN_FAILURES = "2/d"
    api.post(LOGIN, {"email": buyer.email.upper(), "password": "x"}, format="json", REMOTE_ADDR="10.2.0.1")
    api.post(LOGIN, {"email": f"  {buyer.email} ", "password": "x"}, format="json", REMOTE_ADDR="10.2.0.1")

    response = api.post(LOGIN, {"email": buyer.email, "password": PASSWORD}, format="json", REMOTE_ADDR="10.2.0.1")

    error_of(response, 429, "rate_limited")


def test_the_per_ip_login_limit_counts_bodies_that_are_not_objects_too(api, settings):
    settings.RATELIMIT_LOGIN = "2/d"
    post_raw(api, LOGIN, "[]")
    post_raw(api, LOGIN, "not json")

    error_of(api.post(LOGIN, {"email": "a@example.com", "password": "x"}, format="json"), 429, "rate_limited")
