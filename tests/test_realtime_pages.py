"""The live page's HTML shell, `manage.py demo` and `manage.py runsaleclock` (no browser needed)."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import User
from sales.management.commands.demo import DEMO_BUYERS, DEMO_PASSWORD, DEMO_STAFF
from sales.models import FlashSale
from tests.factories import SaleFactory

pytestmark = pytest.mark.django_db


def test_the_home_page_follows_the_active_sale_socket(client):
    response = client.get("/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert 'data-socket-path="/ws/sales/active/"' in page
    assert 'name="viewport"' in page


def test_a_sale_page_escapes_the_sale_name(client):
    sale = SaleFactory(name='<script>alert("x")</script> & co')

    response = client.get(f"/sales/{sale.pk}/")

    assert response.status_code == 200
    page = response.content.decode()
    assert f'data-socket-path="/ws/sales/{sale.pk}/"' in page
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in page


def test_an_unknown_sale_page_is_404(client):
    assert client.get("/sales/424242/").status_code == 404


def test_the_page_only_answers_reads(client):
    assert client.post("/").status_code == 405


def test_demo_creates_accounts_and_a_sale_starting_in_a_minute_once(settings):
    settings.DEBUG = True
    out, again = StringIO(), StringIO()

    call_command("demo", stdout=out)
    call_command("demo", stdout=again)

    sale = FlashSale.objects.get()
    assert sale.status == "pending"
    assert timedelta(seconds=50) < sale.start_time - timezone.now() <= timedelta(seconds=60)
    emails = [DEMO_STAFF[0], *(email for email, _ in DEMO_BUYERS)]
    users = {user.email: user for user in User.objects.filter(email__in=emails)}
    assert set(users) == set(emails) and User.objects.count() == len(emails)
    assert users[DEMO_STAFF[0]].is_staff and not users[DEMO_BUYERS[0][0]].is_staff
    assert all(users[email].check_password(DEMO_PASSWORD) for email, _ in DEMO_BUYERS)
    assert DEMO_PASSWORD in out.getvalue() and DEMO_BUYERS[0][0] in out.getvalue()
    # The staff password is random, printed once, and not the published one.
    staff_password = re.search(r"password (\S+) \(shown only now\)", out.getvalue()).group(1)
    assert len(staff_password) >= 16
    assert users[DEMO_STAFF[0]].check_password(staff_password)
    assert not users[DEMO_STAFF[0]].check_password(DEMO_PASSWORD)
    assert staff_password not in again.getvalue()
    assert User.objects.get(email=DEMO_STAFF[0]).check_password(staff_password)


def test_each_new_demo_database_gets_another_staff_password(settings):
    settings.DEBUG = True
    passwords = []
    for _ in range(2):
        User.objects.filter(email=DEMO_STAFF[0]).delete()
        out = StringIO()
        call_command("demo", stdout=out)
        passwords.append(re.search(r"password (\S+) \(shown only now\)", out.getvalue()).group(1))

    assert passwords[0] != passwords[1]


def test_demo_replaces_a_staff_password_that_an_earlier_demo_published(settings):
    settings.DEBUG = True
    User.objects.create_user(email=DEMO_STAFF[0], name="Demo Staff", password=DEMO_PASSWORD, is_staff=True)
    out = StringIO()

    call_command("demo", stdout=out)

    staff = User.objects.get(email=DEMO_STAFF[0])
    assert not staff.check_password(DEMO_PASSWORD)
    assert staff.check_password(re.search(r"password (\S+) \(shown only now\)", out.getvalue()).group(1))


def test_demo_leaves_an_existing_live_sale_alone(settings):
    settings.DEBUG = True
    live = SaleFactory()

    call_command("demo", stdout=StringIO())

    assert list(FlashSale.objects.all()) == [live]


def test_demo_never_creates_anything_when_debug_is_off(settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="DEBUG is off"):
        call_command("demo", stdout=StringIO())
    call_command("demo", "--only-if-debug", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("demo", "--force", stdout=StringIO())

    assert not User.objects.exists() and not FlashSale.objects.exists()


def test_the_sale_clock_runs_a_bounded_number_of_ticks_and_stops():
    out = StringIO()

    call_command("runsaleclock", "--ticks", "2", "--interval", "0", stdout=out)

    # Alone, it takes the lease and announces (tests/test_clock_failover.py has two of them).
    assert out.getvalue().splitlines() == [
        "sale clock: ticking every 0.0s",
        "sale clock: leading",
        "sale clock: stopped",
    ]
