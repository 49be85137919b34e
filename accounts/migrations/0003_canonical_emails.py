"""Emails stored before they were normalised with NFKC and IDNA (accounts.models.normalize_email)
are rewritten in that form, so the accounts that own them can still log in: login, register and the
admin look addresses up in the new form only.

Only addresses with a character outside printable ASCII can differ (plain ASCII addresses were
already stored lower-case). An address whose new form another account already holds is left as it
is: those are two accounts of one person, for staff to merge; rewriting one would break the unique
index. The function is a copy, frozen as it was when this migration was written.
"""

import unicodedata

from django.db import migrations


def canonical_email(email: str) -> str:
    email = unicodedata.normalize("NFKC", email).strip()
    local, at, domain = email.rpartition("@")
    if at:
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            pass
        email = f"{local}@{domain}"
    return email.lower()


def rewrite_emails(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    for user in User.objects.filter(email__regex=r"[^ -~]").only("pk", "email").iterator():
        canonical = canonical_email(user.email)
        if canonical != user.email and not User.objects.filter(email=canonical).exists():
            User.objects.filter(pk=user.pk).update(email=canonical)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_name_without_invisible_characters"),
    ]

    # Not reversible in content (the typed spelling is gone); going back leaves the new form.
    operations = [migrations.RunPython(rewrite_emails, migrations.RunPython.noop, elidable=True)]
