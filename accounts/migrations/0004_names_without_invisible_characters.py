"""Names stored before invisible and text-direction characters were refused (accounts.validators)
lose those characters: they are shown on the public leaderboard and live feed, where an old
RIGHT-TO-LEFT OVERRIDE would still reverse the text after it. A name left empty becomes
"Buyer <id>". The character rule is a copy, frozen as it was when this migration was written.
"""

import unicodedata

from django.db import migrations

REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def visible(name: str) -> str:
    kept = "".join(
        character
        for character in name
        if unicodedata.category(character) not in REFUSED_CATEGORIES and character not in BLANK_LETTERS
    )
    return kept.strip()


def strip_names(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    # Every refused character is outside printable ASCII.
    for user in User.objects.filter(name__regex=r"[^ -~]").only("pk", "name").iterator():
        name = visible(user.name) or f"Buyer {user.pk}"
        if name != user.name:
            User.objects.filter(pk=user.pk).update(name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_canonical_emails"),
    ]

    # The removed characters are gone; going back leaves the names as they are.
    operations = [migrations.RunPython(strip_names, migrations.RunPython.noop, elidable=True)]
