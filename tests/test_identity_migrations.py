"""Accounts stored before issue 25's identity rules: their emails are rewritten in the normalised form
so they keep logging in (accounts/migrations/0003), their names lose invisible and text-direction
characters (0004)."""

import pytest
from django.contrib.auth.hashers import make_password
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import User
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)  # schema changes: no test transaction around them

BEFORE = [("accounts", "0002_name_without_invisible_characters")]
LOGIN = "/api/v1/auth/login"


@pytest.fixture
def users_before_0003():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    executor.loader.build_graph()
    yield executor.loader.project_state(BEFORE).apps.get_model("accounts", "User")
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # the next test gets today's schema


def migrate_to_today() -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_emails_stored_in_another_spelling_are_rewritten_and_log_in(users_before_0003, api):
    OldUser = users_before_0003
    idn = OldUser.objects.create(email="leser@bücher.example", name="Leser", password="")
    wide = OldUser.objects.create(email="ada@\uff45xample.com", name="Ada", password="")
    plain = OldUser.objects.create(email="bob@example.com", name="Bob", password="")
    twin = OldUser.objects.create(email="eve@\uff45xample.com", name="Eve", password="")
    OldUser.objects.create(email="eve@example.com", name="Eve", password="")

    migrate_to_today()
    User.objects.filter(pk=idn.pk).update(password=make_password(PASSWORD))
    login = api.post(LOGIN, {"email": "leser@bücher.example", "password": PASSWORD}, format="json")

    assert User.objects.get(pk=idn.pk).email == "leser@xn--bcher-kva.example"
    assert User.objects.get(pk=wide.pk).email == "ada@example.com"
    assert User.objects.get(pk=plain.pk).email == "bob@example.com"
    # Its new form belongs to another account: left for staff, not merged and not an error.
    assert User.objects.get(pk=twin.pk).email == "eve@\uff45xample.com"
    assert login.status_code == 200 and login.json()["data"]["userId"] == idn.pk


def test_names_stored_with_invisible_or_text_direction_characters_lose_them(users_before_0003):
    OldUser = users_before_0003
    reversed_ = OldUser.objects.create(email="a@example.com", name="Ada\u202etxt.exe", password="")
    hidden = OldUser.objects.create(email="b@example.com", name="\u200bBob\u200d ", password="")
    blank = OldUser.objects.create(email="c@example.com", name="\u3164\u200b", password="")
    script = OldUser.objects.create(email="d@example.com", name="Zoë 李小龍 ليلى 🚀", password="")

    migrate_to_today()

    names = dict(User.objects.values_list("pk", "name"))
    assert names[reversed_.pk] == "Adatxt.exe"
    assert names[hidden.pk] == "Bob"
    assert names[blank.pk] == f"Buyer {blank.pk}"
    assert names[script.pk] == "Zoë 李小龍 ليلى 🚀"
