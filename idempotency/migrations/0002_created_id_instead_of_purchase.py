"""The key stores the id of the row its request created, as a plain number instead of a foreign key
to sales.Purchase: the idempotency app knows no other app.

Existing rows keep what they replay (status code and body are untouched) and their link: the new
column is filled from the old one before the old one is dropped, in one transaction on PostgreSQL,
so a key is never seen without it. Reversible (an id that names no purchase goes back as none).
"""

from django.db import migrations, models
from django.db.models import F


def copy_purchase_ids(apps, schema_editor):
    IdempotencyKey = apps.get_model("idempotency", "IdempotencyKey")
    IdempotencyKey.objects.filter(purchase__isnull=False).update(created_id=F("purchase"))


def copy_created_ids_back(apps, schema_editor):
    IdempotencyKey = apps.get_model("idempotency", "IdempotencyKey")
    # The model the old foreign key pointed at, from the migration state rather than by name.
    Purchase = IdempotencyKey._meta.get_field("purchase").related_model
    IdempotencyKey.objects.filter(created_id__in=Purchase.objects.values("pk")).update(purchase=F("created_id"))


class Migration(migrations.Migration):
    dependencies = [
        ("idempotency", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="idempotencykey",
            name="created_id",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(copy_purchase_ids, copy_created_ids_back, elidable=True),
        migrations.RemoveField(
            model_name="idempotencykey",
            name="purchase",
        ),
    ]
