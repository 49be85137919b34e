"""The OpenAPI schema at /api/schema/ and the offline Swagger UI at /api/docs/."""

import re

import pytest
from django.contrib.staticfiles import finders
from drf_spectacular.validation import validate_schema

from core.error_codes import ErrorCode
from core.errors import ServiceError

pytestmark = pytest.mark.django_db

# The API contract: every operation clients may call, and whether it needs a token.
OPERATIONS = {
    ("post", "/api/v1/auth/register"): "public",
    ("post", "/api/v1/auth/login"): "public",
    ("post", "/api/v1/auth/logout"): "token",
    ("post", "/api/v1/auth/logout-all"): "token",
    ("get", "/api/v1/flashsales/active"): "token",
    ("post", "/api/v1/flashsales/purchase"): "token",
    ("get", "/api/v1/leaderboard"): "public",
    ("get", "/api/v1/flashsales"): "token",
    ("post", "/api/v1/flashsales"): "token",
    ("get", "/api/v1/flashsales/{id}"): "token",
    ("put", "/api/v1/flashsales/{id}"): "token",
    ("patch", "/api/v1/flashsales/{id}"): "token",
    ("post", "/api/v1/flashsales/{id}/add-units"): "token",
    ("post", "/api/v1/flashsales/{id}/end"): "token",
    ("post", "/api/v1/flashsales/{id}/pause"): "token",
    ("post", "/api/v1/flashsales/{id}/resume"): "token",
    ("post", "/api/v1/flashsales/{id}/waitlist"): "token",
    ("post", "/api/v1/flashsales/{id}/queue"): "token",
    ("get", "/api/v1/flashsales/{id}/queue"): "token",
    ("get", "/api/v1/flashsales/{id}/queue/challenge"): "token",
    ("get", "/api/v1/purchases"): "token",
    ("post", "/api/v1/purchases/{purchase_id}/confirm"): "token",
    ("post", "/api/v1/purchases/{purchase_id}/release"): "token",
    ("get", "/api/v1/health"): "public",
    ("get", "/api/v1/health/ready"): "public",
}
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from django.test import Client

    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def error_codes(operation, status: int) -> set[str]:
    body = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    return set(body["properties"]["error"]["properties"]["code"]["enum"])


def resolve(schema, node):
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def success_body(schema, operation, status: int):
    return resolve(schema, operation["responses"][str(status)]["content"]["application/json"]["schema"])


def test_the_schema_is_valid_openapi_3_and_served_as_json_and_yaml(api, schema):
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")

    yaml = api.get("/api/schema/")
    assert yaml.status_code == 200
    assert yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    assert b"openapi: 3." in yaml.content


def test_the_schema_documents_every_endpoint_of_the_contract(schema):
    documented = {(method, path) for method, path, _ in operations(schema)}

    # Nothing undocumented sneaks in either: anything new must be added to the contract above.
    assert documented == set(OPERATIONS)


def test_the_schema_is_public_even_with_a_stale_token(api):
    api.credentials(HTTP_AUTHORIZATION="Token deleted-long-ago")

    assert api.get("/api/schema/").status_code == 200


def test_token_auth_is_an_api_key_in_the_authorization_header(schema):
    scheme = schema["components"]["securitySchemes"]["tokenAuth"]

    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    assert "Token <key>" in scheme["description"]
    for (method, path), access in OPERATIONS.items():
        security = schema["paths"][path][method].get("security", [])
        needs_token = {"tokenAuth": []} in security and {} not in security
        assert needs_token == (access == "token"), (method, path, security)


def test_protected_operations_document_401_with_both_auth_codes(schema):
    for (method, path), access in OPERATIONS.items():
        if access == "token":
            assert error_codes(schema["paths"][path][method], 401) == {"not_authenticated", "authentication_failed"}


def test_every_api_operation_documents_rate_limiting_and_database_outage(schema):
    for method, path, operation in operations(schema):
        if path.startswith("/api/v1/health"):
            continue  # probes are never rate limited; readiness documents its own 503
        assert "rate_limited" in error_codes(operation, 429), (method, path)
        assert "Retry-After" in operation["responses"]["429"]["headers"]
        assert error_codes(operation, 503) == {"service_unavailable"}, (method, path)


def test_purchase_documents_its_body_envelope_and_every_refusal(schema):
    purchase = schema["paths"]["/api/v1/flashsales/purchase"]["post"]

    body = resolve(schema, purchase["requestBody"]["content"]["application/json"]["schema"])
    assert set(body["required"]) == {"saleId", "quantity"}
    assert body["properties"]["quantity"]["type"] == "integer"
    assert body["properties"]["quantity"]["minimum"] == 1
    assert body["properties"]["quantity"]["maximum"] == 5  # MAX_PURCHASE_QUANTITY

    envelope = success_body(schema, purchase, 201)
    assert set(envelope["required"]) == {"success", "message", "data"}
    assert resolve(schema, envelope["properties"]["success"])["enum"] == [True]
    data = resolve(schema, envelope["properties"]["data"])
    assert set(data["properties"]) == {
        "purchaseId",
        "saleId",
        "quantity",
        "remainingStock",
        "timestamp",
        "status",
        "expiresAt",
    }

    assert error_codes(purchase, 400) == {"validation_error"}
    assert error_codes(purchase, 404) == {"sale_not_found"}
    assert error_codes(purchase, 409) >= {"sale_not_active", "sold_out", "insufficient_stock", "user_limit_reached"}
    assert error_codes(purchase, 413) == {"payload_too_large"}
    assert error_codes(purchase, 415) == {"unsupported_media_type"}


def test_paginated_lists_document_counts_beside_data(schema):
    for path, key in (("/api/v1/leaderboard", "purchases"), ("/api/v1/flashsales", "sales")):
        operation = schema["paths"][path]["get"]
        envelope = success_body(schema, operation, 200)

        assert envelope["type"] == "object"  # not an array: the envelope wraps the list
        assert {"success", "message", "count", "page", "limit", "data"} <= set(envelope["required"])
        page = resolve(schema, envelope["properties"]["data"])
        assert page["properties"][key]["type"] == "array"
        assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} >= {"page", "limit"}


def test_the_leaderboard_entry_documents_names_and_never_emails(schema):
    envelope = success_body(schema, schema["paths"]["/api/v1/leaderboard"]["get"], 200)
    entry = resolve(schema, resolve(schema, envelope["properties"]["data"])["properties"]["purchases"]["items"])

    assert "userName" in entry["properties"]
    assert not any("mail" in name.lower() for name in entry["properties"])


def test_staff_operations_document_403_and_sale_ids_as_integers(schema):
    for method, path in OPERATIONS:
        operation = schema["paths"][path][method]
        buyers = {"/api/v1/flashsales/purchase", "/api/v1/flashsales/{id}/waitlist", "/api/v1/flashsales/{id}/queue"}
        if method != "get" and path.startswith("/api/v1/flashsales") and path not in buyers:
            assert error_codes(operation, 403) == {"permission_denied"}, (method, path)
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["schema"]["type"] == "integer"
                missing = "purchase_not_found" if path.startswith("/api/v1/purchases/") else "sale_not_found"
                assert error_codes(operation, 404) >= {"not_found", missing}


def test_edits_document_the_version_they_require_and_the_conflict(schema):
    for method in ("put", "patch"):
        operation = schema["paths"]["/api/v1/flashsales/{id}"][method]
        body = resolve(schema, operation["requestBody"]["content"]["application/json"]["schema"])

        assert body["required"] == ["version"]
        assert error_codes(operation, 409) == {"version_conflict"}


def _service_errors(cls=ServiceError):
    for sub in cls.__subclasses__():
        yield sub
        yield from _service_errors(sub)


def test_every_error_code_the_services_can_raise_is_documented(schema):
    documented = set()
    for _, _, operation in operations(schema):
        for status in operation["responses"]:
            if status >= "400":
                documented |= error_codes(operation, int(status))

    raised = {error.code for error in _service_errors() if error.code != ServiceError.code}

    assert raised, "no ServiceError subclasses found"
    assert raised <= documented, sorted(raised - documented)


def test_the_schema_names_registered_error_codes_under_their_statuses(schema):
    named = set()
    for _, _, operation in operations(schema):
        for status in operation["responses"]:
            if status >= "400":
                named |= {(int(status), code) for code in error_codes(operation, int(status))}
    shared = schema["components"]["responses"]["BadHost"]["content"]["application/json"]["schema"]
    named |= {(400, code) for code in shared["properties"]["error"]["properties"]["code"]["enum"]}

    assert named <= {(code.status, code.value) for code in ErrorCode}, named
    # A 500 is never promised, a 405 answers a method no operation has, and a 406 an Accept
    # header that refuses JSON.
    unnamed = {ErrorCode.INTERNAL_ERROR, ErrorCode.METHOD_NOT_ALLOWED, ErrorCode.NOT_ACCEPTABLE}
    assert {code for _, code in named} == {code.value for code in ErrorCode} - unnamed


def test_every_error_response_has_the_one_error_shape(schema):
    for method, path, operation in operations(schema):
        for status, response in operation["responses"].items():
            if status < "400":
                continue
            body = response["content"]["application/json"]["schema"]
            assert body["properties"]["success"]["enum"] == [False], (method, path, status)
            assert set(body["properties"]["error"]["required"]) == {"code", "message", "details"}


def test_swagger_ui_is_served_without_any_cdn(api):
    response = api.get("/api/docs/")

    assert response.status_code == 200
    page = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    # Its start-up script is a file of this origin too (the CSP allows no inline script).
    start_up = [asset for asset in assets if asset.startswith("/api/docs/?script=")]
    assert len(start_up) == 1
    assert 'url: "/api/schema"' in api.get(start_up[0]).content.decode()
    for asset in set(assets) - set(start_up):
        assert asset.startswith("/static/"), asset  # nothing from another origin
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not shipped with the app"
    assert "cdn." not in page and "https://" not in page


def test_readiness_documents_each_dependency_and_its_503(schema):
    ready = schema["paths"]["/api/v1/health/ready"]["get"]

    # The probes are DRF views now: their shapes are components, followed through their $refs.
    data = resolve(schema, success_body(schema, ready, 200)["properties"]["data"])
    checks = resolve(schema, data["properties"]["checks"])
    assert set(checks["required"]) == {"database", "redis"}
    assert "latencyMs" in resolve(schema, checks["properties"]["database"])["properties"]
    assert error_codes(ready, 503) == {"service_unavailable"}
    assert "429" not in ready["responses"]  # probes are never rate limited


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_production_server_serves_swagger_ui_and_all_its_assets_itself(tmp_path):
    """DEBUG off, static files collected the way ./scripts/serve does: every asset comes from us."""
    import subprocess
    import sys

    import httpx

    from harness.servers import PROJECT_DIR, daphne_server, server_env

    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=PROJECT_DIR,
        env=server_env(STATIC_ROOT=str(tmp_path)),
        check=True,
        timeout=120,
    )
    with daphne_server(STATIC_ROOT=str(tmp_path)) as base_url:
        page = httpx.get(f"{base_url}/api/docs/", timeout=10)
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        fetched = {asset: httpx.get(f"{base_url}{asset}", timeout=10) for asset in assets}
        schema = httpx.get(f"{base_url}/api/schema", timeout=10)

    assert page.status_code == 200
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    for asset, response in fetched.items():
        assert response.status_code == 200, asset
        assert len(response.content) > 100, asset
    assert schema.status_code == 200 and b"openapi: 3." in schema.content


def test_confirm_and_release_document_their_purchase_and_every_refusal(schema):
    confirm = schema["paths"]["/api/v1/purchases/{purchase_id}/confirm"]["post"]
    release = schema["paths"]["/api/v1/purchases/{purchase_id}/release"]["post"]

    for operation in (confirm, release):
        data = resolve(schema, success_body(schema, operation, 200)["properties"]["data"])
        assert set(data["properties"]) == {
            "purchaseId",
            "saleId",
            "quantity",
            "status",
            "timestamp",
            "expiresAt",
            "confirmedAt",
            "releasedAt",
        }
        assert error_codes(operation, 404) == {"not_found", "purchase_not_found"}
        assert "Idempotency-Key" in {parameter["name"] for parameter in operation["parameters"]}
    assert error_codes(confirm, 409) >= {"hold_expired", "hold_released"}
    assert error_codes(release, 409) >= {"hold_expired", "hold_confirmed"}


def test_the_schema_documents_pause_resume_the_sale_limits_and_sale_paused(schema):
    purchase = schema["paths"]["/api/v1/flashsales/purchase"]["post"]
    assert "sale_paused" in error_codes(purchase, 409)
    for action in ("pause", "resume"):
        operation = schema["paths"][f"/api/v1/flashsales/{{id}}/{action}"]["post"]
        assert "requestBody" not in operation
        assert error_codes(operation, 403) == {"permission_denied"}
    sale = resolve(schema, resolve(schema, success_body(schema, operation, 200)["properties"]["data"]))
    assert {"version", "stockVersion", "paused", "maxPerBuyer", "maxPerPurchase"} <= set(sale["properties"])
    assert sale["properties"]["maxPerPurchase"]["maximum"] == 5  # MAX_PURCHASE_QUANTITY, the ceiling
