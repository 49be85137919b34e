"""The join challenge's browser side in a real headless Chromium, under the site's CSP: the script
(sales/static/sales/join_challenge.js) fetches a buyer's challenge and solves it in its Web Workers,
the API takes that solution, and refuses a spoiled one."""

import re
import subprocess
import sys
from uuid import uuid4

import pytest
from playwright.sync_api import expect

from harness.servers import PROJECT_DIR, daphne_server, server_env
from sales import queue
from sales.models import QueuePlace
from tests.browsers import page_in
from tests.factories import PASSWORD, SaleFactory, TokenFactory, UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

# A few hundred tries: the browser solves it in well under a second.
DIFFICULTY = 200


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    """One Daphne process, DEBUG off, static files from WhiteNoise: what ./scripts/serve runs."""
    shared = {"CHANNEL_PREFIX": f"test-pow-{uuid4().hex[:8]}", "STATIC_ROOT": str(tmp_path_factory.mktemp("static"))}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=PROJECT_DIR,
        env=server_env(**shared),
        check=True,
    )
    with daphne_server(**shared) as base_url:
        yield base_url


# Runs in the page: solve the challenge through the script, optionally spoil the solution, join.
JOIN = """async ([saleId, token, spoil]) => {
  const body = await window.flashsaleJoinChallenge.solveJoinChallenge(saleId, token);
  if (spoil && body.solution) {
    const last = body.solution.derivedKey.slice(-1);
    body.solution.derivedKey = body.solution.derivedKey.slice(0, -1) + (last === "0" ? "1" : "0");
  }
  const response = await fetch(`/api/v1/flashsales/${saleId}/queue`, {
    method: "POST",
    headers: {"Content-Type": "application/json", "Authorization": `Token ${token}`},
    body: JSON.stringify(body),
  });
  return {status: response.status, body: await response.json(), sent: body};
}"""


def open_with_script(page, server: str, sale_id: int) -> list[str]:
    """The sale's live page (the site's CSP in force), which loads the join challenge's script; returns
    the list that collects every CSP violation Chromium reports."""
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{server}/sales/{sale_id}/")
    page.wait_for_function("() => window.flashsaleJoinChallenge !== undefined")
    return violations


def test_the_workers_solution_is_accepted_and_a_spoiled_one_refused(server, browser, request):
    sale = SaleFactory(waiting_room=True, join_difficulty=DIFFICULTY)
    honest, cheat = TokenFactory(), TokenFactory()

    with page_in(browser, request) as page:
        violations = open_with_script(page, server, sale.pk)
        spoiled = page.evaluate(JOIN, [sale.pk, cheat.key, True])
        joined = page.evaluate(JOIN, [sale.pk, honest.key, False])

        assert violations == []
    assert joined["status"] == 201, joined["body"]
    assert joined["body"]["data"]["status"] == "waiting"
    assert set(joined["sent"]) == {"challenge", "solution"}
    assert (spoiled["status"], spoiled["body"]["error"]["code"]) == (400, "challenge_failed")
    assert spoiled["body"]["error"]["details"]["reason"] == "invalid"
    assert list(QueuePlace.objects.filter(sale=sale).values_list("user_id", flat=True)) == [honest.user_id]


def test_a_sale_without_a_difficulty_needs_an_empty_body(server, browser, request):
    sale = SaleFactory(waiting_room=True)
    token = TokenFactory()

    with page_in(browser, request) as page:
        open_with_script(page, server, sale.pk)
        joined = page.evaluate(JOIN, [sale.pk, token.key, False])

    assert (joined["status"], joined["sent"]) == (201, {})
    assert QueuePlace.objects.filter(sale=sale, user_id=token.user_id).count() == 1


def test_a_refused_challenge_rejects_with_the_apis_code(server, browser, request):
    plain = SaleFactory()
    token = TokenFactory()

    with page_in(browser, request) as page:
        open_with_script(page, server, plain.pk)
        code = page.evaluate(
            """([saleId, token]) => window.flashsaleJoinChallenge.solveJoinChallenge(saleId, token)
                 .then(() => "resolved", (error) => `${error.status} ${error.code}`)""",
            [plain.pk, token.key],
        )

    assert code == "409 no_waiting_room"
    assert not QueuePlace.objects.exists()


def test_a_buyer_joins_a_line_with_a_proof_of_work_by_clicking_join(server, browser, request):
    sale = SaleFactory(waiting_room=True, join_difficulty=DIFFICULTY)
    queue.number_places()  # the clock's draw at the start: joins are numbered from here on
    buyer = UserFactory()

    with page_in(browser, request) as page:
        violations = open_with_script(page, server, sale.pk)
        page.fill("#email", buyer.email)
        page.fill("#password", PASSWORD)
        page.click("#login-button")
        expect(page.get_by_test_id("queue-status")).to_have_text("Join the line to buy.", timeout=10_000)
        page.click("#join-button")

        expect(page.get_by_test_id("queue-status")).to_have_text(re.compile("ahead of you|You're next"), timeout=10_000)
        assert violations == []
    place = QueuePlace.objects.get(sale=sale)
    assert (place.user_id, place.position) == (buyer.pk, 1)
