"""Identity input (issue 25, item 11): blank passwords, names that hide or reorder text, and emails
that look the same but were spelled with other code points."""

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.models import User, normalize_email
from tests.error_shape import assert_error_shape
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
ADD_USER = reverse("admin:accounts_user_add")
NEW_PASSWORD = "a-long-unusual-passphrase-42"


def register(api, **fields):
    return api.post(
        REGISTER, {"name": "Ada", "email": "ada@example.com", "password": PASSWORD, **fields}, format="json"
    )


@pytest.fixture
def superuser_browser(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True, email="boss@example.com"))
    return client


def new_user_form(**overrides) -> dict:
    return {
        "email": "new.person@example.com",
        "name": "New Person",
        "usable_password": "true",
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
        "_save": "Save",
        **overrides,
    }


# --- passwords --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [" " * 12, "\t \t \t \t \t ", "\u3000" * 10, "\u00a0" * 10, " \u200b" * 6],
    ids=["spaces", "tabs-and-spaces", "ideographic-spaces", "no-break-spaces", "spaces-and-zero-width"],
)
def test_a_password_of_only_blanks_is_refused_and_creates_no_user(api, password):
    response = register(api, password=password)

    body = assert_error_shape(response, 400, "validation_error")
    assert "This password is only spaces or other blank characters." in body["error"]["details"]["password"]
    assert not User.objects.exists()


def test_a_password_with_spaces_around_other_characters_is_accepted(api):
    response = register(api, password="  correct horse battery  ")

    assert response.status_code == 201
    assert User.objects.get().check_password("  correct horse battery  ")


def test_the_admin_refuses_a_new_user_whose_password_is_only_spaces(superuser_browser):
    response = superuser_browser.post(ADD_USER, new_user_form(password1=" " * 12, password2=" " * 12))

    assert response.status_code == 200
    assert "only spaces" in " ".join(response.context["adminform"].form.errors["password2"])
    assert not User.objects.filter(email="new.person@example.com").exists()


# --- names ------------------------------------------------------------------------------------

UNSEEN = [
    ("Ada\u202etxt.exe", "U+202E"),  # RIGHT-TO-LEFT OVERRIDE
    ("Ada\u2066Eve\u2069", "U+2066, U+2069"),  # LEFT-TO-RIGHT ISOLATE ... POP DIRECTIONAL ISOLATE
    ("Ad\u200fa", "U+200F"),  # RIGHT-TO-LEFT MARK
    ("A\u200bda", "U+200B"),  # ZERO WIDTH SPACE
    ("Ada\u200d", "U+200D"),  # ZERO WIDTH JOINER
    ("\ufeffAda", "U+FEFF"),  # ZERO WIDTH NO-BREAK SPACE (BOM)
    ("Ada\u2060", "U+2060"),  # WORD JOINER
    ("Ada\u00ad", "U+00AD"),  # SOFT HYPHEN
    ("\u3164", "U+3164"),  # HANGUL FILLER: a "letter" that shows nothing
    ("Ada\nEve", "U+000A"),
    ("Ada\u2028Eve", "U+2028"),  # LINE SEPARATOR
    ("Ada\ue000", "U+E000"),  # private use
]


@pytest.mark.parametrize(("name", "found"), UNSEEN, ids=[found for _, found in UNSEEN])
def test_a_name_with_text_direction_or_invisible_characters_is_refused_naming_the_field(api, name, found):
    response = register(api, name=name)

    body = assert_error_shape(response, 400, "validation_error")
    assert set(body["error"]["details"]) == {"name"}
    assert body["error"]["details"]["name"] == [
        f"Names may not contain invisible, control or text-direction characters (found {found})."
    ]
    assert not User.objects.exists()


@pytest.mark.parametrize("name", ["Zoë Ångström", "李小龍", "ليلى", "José María O'Neil-Smith", "Ada 🚀"])
def test_names_in_any_script_are_stored_exactly(api, name):
    response = register(api, name=name)

    assert response.status_code == 201
    assert User.objects.get().name == name


def test_the_admin_refuses_a_name_with_a_right_to_left_override_when_adding_a_user(superuser_browser):
    response = superuser_browser.post(ADD_USER, new_user_form(name="Ada\u202e"))

    assert response.status_code == 200
    assert "U+202E" in " ".join(response.context["adminform"].form.errors["name"])
    assert not User.objects.filter(email="new.person@example.com").exists()


def test_createsuperuser_refuses_a_name_with_a_zero_width_space(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "boss@example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    monkeypatch.setenv("DJANGO_SUPERUSER_NAME", "Bo\u200bss")

    with pytest.raises(CommandError, match="U\\+200B"):
        call_command("createsuperuser", interactive=False, verbosity=0)

    assert not User.objects.exists()


# --- emails -----------------------------------------------------------------------------------

FULL_WIDTH_E = "\uff45"  # FULLWIDTH LATIN SMALL LETTER E, shown like "e"


def test_an_email_with_a_full_width_domain_letter_is_the_same_account_as_its_plain_twin(api):
    UserFactory(email="ada@example.com")

    response = register(api, email=f"ada@{FULL_WIDTH_E}xample.com")

    assert_error_shape(response, 409, "email_taken")
    assert list(User.objects.values_list("email", flat=True)) == ["ada@example.com"]


def test_a_full_width_email_registers_in_its_plain_form_and_its_plain_twin_is_then_taken(api):
    first = register(api, email=f"ＡＤＡ@{FULL_WIDTH_E}xample.com")
    second = register(api, email="ada@example.com")

    assert first.status_code == 201 and first.json()["data"]["email"] == "ada@example.com"
    assert_error_shape(second, 409, "email_taken")
    assert list(User.objects.values_list("email", flat=True)) == ["ada@example.com"]


def test_an_internationalised_domain_is_stored_in_its_idna_form_and_matches_its_other_spellings(api):
    first = register(api, email="Ada@Bücher.de")
    twin = register(api, email="ada@xn--bcher-kva.de")

    assert first.status_code == 201
    assert first.json()["data"]["email"] == "ada@xn--bcher-kva.de"
    assert_error_shape(twin, 409, "email_taken")
    assert User.objects.count() == 1


def test_logging_in_with_a_full_width_spelling_of_the_email_finds_the_account(api):
    user = UserFactory(email="ada@example.com")

    response = api.post(LOGIN, {"email": f"ADA@{FULL_WIDTH_E}xample.com", "password": PASSWORD}, format="json")

    assert response.status_code == 200
    assert response.json()["data"]["userId"] == user.pk


def test_the_admin_refuses_a_new_user_whose_email_is_a_full_width_twin(superuser_browser):
    UserFactory(email="new.person@example.com")

    response = superuser_browser.post(ADD_USER, new_user_form(email=f"new.person@{FULL_WIDTH_E}xample.com"))

    assert response.status_code == 200
    assert "already exists" in " ".join(response.context["adminform"].form.errors["email"])
    assert User.objects.count() == 2  # the twin and the signed-in superuser


def test_createsuperuser_refuses_a_full_width_twin_of_an_existing_email(monkeypatch):
    UserFactory(email="boss@example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", f"Boss@{FULL_WIDTH_E}xample.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    monkeypatch.setenv("DJANGO_SUPERUSER_NAME", "Boss")

    with pytest.raises(CommandError, match="already taken"):
        call_command("createsuperuser", interactive=False, verbosity=0)

    assert User.objects.count() == 1


def test_the_manager_stores_the_normalised_email():
    user = User.objects.create_user(email=f" Ada@{FULL_WIDTH_E}XAMPLE.com ", name="Ada", password=PASSWORD)

    assert User.objects.get(pk=user.pk).email == "ada@example.com"
    assert User.objects.get_by_natural_key(f"ada@{FULL_WIDTH_E}xample.com") == user


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Ada@Example.COM", "ada@example.com"),
        (f"ada@{FULL_WIDTH_E}xample.com", "ada@example.com"),
        ("ＡＤＡ＠example.com", "ada@example.com"),  # a full-width "@" too
        ("ada@bücher.de", "ada@xn--bcher-kva.de"),
        ("ada@BÜCHER.de", "ada@xn--bcher-kva.de"),
        ("not-an-email", "not-an-email"),
        ("ada@" + "a" * 64 + ".com", "ada@" + "a" * 64 + ".com"),  # a label IDNA refuses is kept as typed
    ],
)
def test_normalize_email_folds_every_spelling_of_one_address(typed, stored):
    assert normalize_email(typed) == stored


def test_the_admin_stores_a_full_width_email_in_its_plain_form(superuser_browser):
    response = superuser_browser.post(ADD_USER, new_user_form(email="ＮＥＷ.person＠ｅxample.com"))

    assert response.status_code == 302
    assert User.objects.filter(email="new.person@example.com").count() == 1
