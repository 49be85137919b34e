"""The README's curl tour, run as it stands in README.md against a served instance seeded the way
`./scripts/serve` seeds it (migrations, then `manage.py demo`): it must stay true on a fresh serve."""

import re
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import User
from harness.servers import PROJECT_DIR, daphne_server, server_env
from sales.management.commands.demo import DEMO_BUYERS, DEMO_PASSWORD
from sales.models import FlashSale, Purchase

TOUR_MARKER = "<!-- readme-tour:"


def readme_tour() -> str:
    """The first bash block after the tour's marker in README.md."""
    readme = (PROJECT_DIR / "README.md").read_text()
    assert readme.count(TOUR_MARKER) == 1, "README.md must mark exactly one curl tour"
    after_marker = readme[readme.index(TOUR_MARKER) :]
    block = re.search(r"^```bash\n(.*?)^```$", after_marker, re.DOTALL | re.MULTILINE)
    assert block, "no bash block after the README's tour marker"
    return block.group(1)


def seed_like_scripts_serve(env: dict[str, str]) -> None:
    for command in (["migrate", "--noinput"], ["demo", "--only-if-debug"]):
        subprocess.run(
            [sys.executable, "manage.py", *command], cwd=PROJECT_DIR, env=env, check=True, capture_output=True
        )


# The served instance reads the test database through DATABASE_URL (harness/servers.py): PostgreSQL.
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_readme_curl_tour_buys_from_its_own_sale_on_a_freshly_served_demo():
    # DEBUG on, as a fresh `./scripts/serve` runs, so that `demo` creates its accounts and sale.
    env = server_env(DEBUG="true")
    seed_like_scripts_serve(env)
    demo_sale = FlashSale.objects.get()
    assert set(User.objects.filter(is_staff=False).values_list("email", flat=True)) == {e for e, _ in DEMO_BUYERS}
    # The demo's sale is live here, so `active` would name it: the tour must still buy from its own.
    FlashSale.objects.filter(pk=demo_sale.pk).update(start_time=timezone.now() - timedelta(minutes=1))

    with daphne_server(DEBUG="true") as base_url:
        tour = subprocess.run(
            # -e: any failing step fails the tour; -u: a variable it forgot to set fails too.
            ["bash", "-euo", "pipefail", "-c", readme_tour()],
            cwd=PROJECT_DIR,
            env={**env, "BASE": base_url},
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert tour.returncode == 0, f"stdout:\n{tour.stdout}\nstderr:\n{tour.stderr}"
    assert "Traceback" not in tour.stderr
    purchase = Purchase.objects.select_related("user", "sale").get()
    assert purchase.quantity == 2
    assert purchase.sale.name == "Sneakers" and purchase.sale.pk != demo_sale.pk
    assert purchase.sale.current_stock == 98
    assert purchase.user.email.startswith("shopper-")
    assert purchase.user.check_password("correct-horse-battery")
    assert f"Watch it live: {base_url}/sales/{purchase.sale.pk}/" in tour.stdout
    # The demo's own accounts and sale are untouched.
    assert FlashSale.objects.get(pk=demo_sale.pk).current_stock == demo_sale.original_stock
    assert User.objects.get(email=DEMO_BUYERS[0][0]).check_password(DEMO_PASSWORD)


def test_the_readme_tour_stops_with_the_servers_answer_when_login_fails():
    """The token line exits non-zero with the JSON error instead of a Python traceback."""
    token_line = re.search(r"^TOKEN=\$\(.*?'\)$", readme_tour(), re.DOTALL | re.MULTILINE)
    assert token_line, "the tour has no TOKEN=$(...) line"
    extractor = token_line.group(0).split("| python3 -c ", 1)[1][:-1]
    answer = '{"success": false, "error": {"code": "invalid_credentials", "message": "Invalid email or password."}}'
    run = subprocess.run(
        ["bash", "-c", f"printf '%s' '{answer}' | python3 -c {extractor}"], capture_output=True, text=True
    )
    assert run.returncode != 0
    assert run.stdout == ""
    assert "invalid_credentials" in run.stderr and "Traceback" not in run.stderr
