"""The purchase function, v2 (sales/sql/flashsale_purchase_v2.sql): the per-sale limits and the pause
are read from the locked sale row, and a purchase bumps `stock_version` instead of `version`, so a
purchase never makes a staff edit stale.

Why each step is safe under READ COMMITTED is said in 0002 and still holds: the pause and the limit
per purchase are conditions of the same conditional UPDATE as the window and the stock, so a purchase
waiting for the row lock behind a pause re-checks them on the paused row and is refused.
"""

from django.db import migrations

from sales.sql import source

DROP_V1 = "DROP FUNCTION IF EXISTS flashsale_purchase(bigint, bigint, integer, integer);"
DROP_V2 = "DROP FUNCTION IF EXISTS flashsale_purchase(bigint, bigint, integer, integer, integer);"


def install_v2(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_V1)
        schema_editor.execute(source("flashsale_purchase_v2"))


def back_to_v1(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_V2)
        schema_editor.execute(source("flashsale_purchase_v1"))


class Migration(migrations.Migration):
    dependencies = [("sales", "0003_limits_pause_stock_version")]

    operations = [migrations.RunPython(install_v2, back_to_v1)]
