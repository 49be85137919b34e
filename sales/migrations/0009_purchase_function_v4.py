"""The purchase function v4 (sales/sql/flashsale_purchase_v4.sql): v3 plus the waiting room's check.
After the decrement, under the sale's row lock, a waiting-room sale reads the buyer's place (one row by
its unique (sale, user) index) and refuses, giving the units back, unless the place is admitted and its
admission runs at the database's clock; a sale without a waiting room does exactly what v3 did. The
result type is v3's, so CREATE OR REPLACE suffices."""

from django.db import migrations

from sales.sql import source


def install_v4(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(source("flashsale_purchase_v4"))


def back_to_v3(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(source("flashsale_purchase_v3"))


class Migration(migrations.Migration):
    dependencies = [("sales", "0008_admission")]

    operations = [migrations.RunPython(install_v4, back_to_v3)]
