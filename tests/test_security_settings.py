"""Content-Security-Policy on every page, HSTS under HTTPS, a clean deploy check, a strong SECRET_KEY."""

import os
import re
import subprocess
import sys

import pytest

from harness.servers import PROJECT_DIR
from tests.factories import SaleFactory, UserFactory

pytestmark = pytest.mark.django_db

LONG_KEY = "k3Yq9-Lm2Zr8Tb4Kw7Vn1Xc6Hd5Jf0Gs3Pa9Qe2Wr8Ty4Ui7Op1As6Df5Gh0Jk"


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


PAGES = [
    "/",
    "/sales/{sale}/",
    "/admin/login/",
    "/admin/sales/flashsale/",
    "/admin/sales/flashsale/{sale}/change/",
    "/api/docs/",
]


def get_page(client, path: str):
    """The page at `path` ({sale}: a live sale's id), as staff except for the sign-in page."""
    sale = SaleFactory()
    if path.startswith("/admin/") and path != "/admin/login/":
        client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client.get(path.format(sale=sale.pk))


@pytest.mark.parametrize("path", [*PAGES, "/api/v1/health"])
def test_every_page_gets_a_policy_that_runs_only_this_origins_script_files(client, path):
    response = get_page(client, path)

    assert response.status_code == 200
    policy = directives(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no other origin
    assert policy["connect-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"] and policy["form-action"] == ["'self'"]
    assert not any(re.match(r"^(https?:|\*)", value) for values in policy.values() for value in values)


def test_api_answers_carry_the_policy_pages_get_and_follow_a_changed_setting(client, settings):
    # The API's header is built once per process (core.middleware.ApiAwareCSPMiddleware);
    # it must stay the one django-csp builds for a page, also after the setting changes.
    page, api = client.get("/admin/login/"), client.get("/api/v1/health")
    assert api["Content-Security-Policy"] == page["Content-Security-Policy"]

    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"img-src": ["'self'"]}}
    page, api = client.get("/admin/login/"), client.get("/api/v1/health")

    assert api["Content-Security-Policy"] == page["Content-Security-Policy"] == "default-src 'none'"
    assert api["Content-Security-Policy-Report-Only"] == page["Content-Security-Policy-Report-Only"]


@pytest.mark.parametrize("path", PAGES)
def test_html_pages_have_no_inline_script(client, path):
    html = get_page(client, path).content.decode()

    scripts = re.findall(r"<script\b([^>]*)>", html)
    assert scripts
    # A data block (application/json) is never run; every script that runs comes from a file.
    assert all("src=" in attributes or "application/json" in attributes for attributes in scripts), scripts
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers


def test_swagger_ui_loads_its_start_up_script_from_this_origin(client):
    html = client.get("/api/docs/").content.decode()
    script_url = re.search(r'<script src="([^"]*\?script=[^"]*)"', html).group(1).replace("&amp;", "&")

    script = client.get(script_url)

    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.content.decode()


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "HTTPS", "TEST_DATABASE_NAME"}}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=PROJECT_DIR, env=full_env, capture_output=True, text=True, timeout=120
    )


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": LONG_KEY,
    "ALLOWED_HOSTS": "shop.example.com",
    "HTTPS": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_PROXY_SSL": "true",
}


def test_the_deploy_check_is_clean_with_the_production_settings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


# What deploy/run's header says production sets; the rest comes from deploy/env, as deploy/run sources it.
DEPLOY_RUN_PRODUCTION = {"DEBUG": "false", "SECRET_KEY": LONG_KEY, "ALLOWED_HOSTS": "shop.example.com"}
TLS_SETTINGS = ("HTTPS", "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL", "DEPLOY_PLAIN_HTTP")


def deploy_check_with_deploy_env(**env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "TEST_DATABASE_NAME", *TLS_SETTINGS}
    }
    return subprocess.run(
        ["bash", "-c", 'source deploy/env && exec "$0" manage.py check --deploy --fail-level WARNING', sys.executable],
        cwd=PROJECT_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_deploy_check_is_clean_with_deploy_runs_documented_production_configuration():
    result = deploy_check_with_deploy_env(**DEPLOY_RUN_PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_a_plain_http_deploy_run_on_loopback_is_what_the_deploy_check_warns_about():
    result = deploy_check_with_deploy_env(**DEPLOY_RUN_PRODUCTION, DEPLOY_PLAIN_HTTP="1")

    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W010", "security.W016"):
        assert warning in result.stderr + result.stdout


HSTS_PROBE = (
    "import django; django.setup(); from django.test import Client; "
    "r = Client(HTTP_HOST='shop.example.com').get('/api/v1/health', secure=True); "
    "print(r.status_code, r.get('Strict-Transport-Security', 'none'))"
)


def test_https_responses_carry_hsts_for_a_year_when_https_is_on():
    on = subprocess.run(
        [sys.executable, "-c", HSTS_PROBE],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **PRODUCTION, "DJANGO_SETTINGS_MODULE": "flashsale.settings", "REQUEST_LOG": "false"},
    )
    off = subprocess.run(
        [sys.executable, "-c", HSTS_PROBE],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            **PRODUCTION,
            "HTTPS": "false",
            "SECURE_SSL_REDIRECT": "false",
            "DJANGO_SETTINGS_MODULE": "flashsale.settings",
            "REQUEST_LOG": "false",
        },
    )

    assert on.stdout.split() == ["200", "max-age=31536000;", "includeSubDomains"], on.stderr
    assert off.stdout.split() == ["200", "none"], off.stderr


@pytest.mark.parametrize("key", ["short-key", "a" * 60, "django-insecure-" + LONG_KEY])
def test_a_weak_secret_key_is_refused_when_debug_is_off(key):
    result = run_manage("check", **{**PRODUCTION, "SECRET_KEY": key})

    assert result.returncode != 0
    assert "SECRET_KEY must be at least 50 characters" in result.stderr


def test_a_short_secret_key_is_accepted_in_debug():
    result = run_manage("check", DEBUG="true", SECRET_KEY="short-key")

    assert result.returncode == 0, result.stderr
