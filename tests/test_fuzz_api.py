"""Schemathesis against the live schema of a real Daphne process: no 5xx, and every answer conforms.

Each API operation gets a bounded number of generated requests (valid and deliberately invalid ones)
from a fixed seed, once as an anonymous client, once as a buyer and once as staff (token in the
Authorization header). Every response must be documented for its status, match its documented
schema and never be a server error. Rate limiting is off on the fuzz server: the global per-IP
ceiling would otherwise answer most of the run with 429.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from harness.servers import daphne_server
from tests.factories import SaleFactory, TokenFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, reset_sequences=True)]

EXAMPLES_PER_OPERATION = 15
SEED = 20261125
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live_api(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        with daphne_server(RATELIMIT_ENABLE="false") as base_url:
            yield base_url


@pytest.fixture
def fuzz_world(transactional_db):
    """Rows the generated requests can hit: sale 1 is live (ids restart at 1 for this test)."""
    SaleFactory(original_stock=50)
    SaleFactory()


def _token_header(user) -> dict[str, str]:
    return {"Authorization": f"Token {TokenFactory(user=user).key}"}


def _fuzz(base_url: str, headers: dict[str, str], seen: dict | None = None) -> list[str]:
    """Run every operation of the live schema; return a report per failing operation.

    `seen` collects, per "METHOD path", the statuses answered.
    """
    seen = {} if seen is None else seen
    schema = schemathesis.openapi.from_url(f"{base_url}/api/schema/?format=json")
    failures = []
    # Logout (and logout-all) deletes the token the other operations are called with: they go last.
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda op: op.path.endswith(("/logout", "/logout-all")),
    )
    assert len(operations) >= 12, "the schema lost operations"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @seed(SEED)
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                derandomize=False,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                response = case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)
                # run() is called right below, within this iteration: the loop variable is current.
                seen.setdefault(f"{operation.method.upper()} {operation.path}", set()).add(  # noqa: B023
                    response.status_code
                )

            try:
                run()
            except Unsatisfiable:
                # Nothing in this operation can be made invalid (no parameters, no body).
                if mode is not GenerationMode.NEGATIVE:
                    raise
            except Exception as failure:  # noqa: BLE001 - each operation's report is collected
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}):\n{failure}")
    return failures


PUBLIC = {
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/register",
    "GET /api/v1/health",
    "GET /api/v1/health/ready",
    "GET /api/v1/leaderboard",
}


def test_anonymous_clients_get_no_5xx_only_documented_answers_and_nothing_protected(live_api, fuzz_world):
    seen = {}

    assert _fuzz(live_api, {}, seen) == []

    assert set(seen) >= PUBLIC
    for operation, statuses in seen.items():
        if operation not in PUBLIC:
            assert all(status >= 400 for status in statuses), (operation, statuses)


def test_buyers_get_no_5xx_and_only_documented_answers(live_api, fuzz_world):
    seen = {}

    assert _fuzz(live_api, _token_header(UserFactory()), seen) == []

    # The generated requests reached the business rules, not only validation and auth.
    assert 201 in seen["POST /api/v1/flashsales/purchase"]
    assert 200 in seen["GET /api/v1/flashsales/{id}"]
    assert not any(status < 300 for status in seen["POST /api/v1/flashsales/{id}/add-units"])


def test_staff_get_no_5xx_and_only_documented_answers(live_api, fuzz_world):
    seen = {}

    assert _fuzz(live_api, _token_header(UserFactory(is_staff=True)), seen) == []

    assert 201 in seen["POST /api/v1/flashsales"]
    assert 200 in seen["POST /api/v1/flashsales/{id}/add-units"]
