"""The purchase as one PostgreSQL function, so the sale's row lock lives only inside the server.

`sales.purchase` calls `flashsale_purchase(user, sale, quantity, cap)` in autocommit: one
round trip that decides, writes and commits. The sale's row lock is taken by the conditional UPDATE
and released by that statement's commit, with no Python (and no GIL hand-off) in between.

Why each step is safe under READ COMMITTED:
- "live" is decided on the database's clock while the row is held: `clock_timestamp()` is volatile,
  so when the UPDATE waited for another buyer's lock and re-checks its WHERE on the new row version,
  it reads the clock again (`now()` would be the transaction's start). The purchase's timestamp is
  taken after the lock is held; if the end passed in the microseconds between, the purchase is undone.
- The per-user cap: the function is VOLATILE, so each statement in it takes a fresh snapshot. The
  SUM runs after the UPDATE holds the sale's row lock, and every purchase of this sale is inserted
  while holding that same lock, so the SUM sees all of them (a SUM in the UPDATE's own WHERE would
  see the statement's snapshot, taken before waiting, and is NOT safe).
- A refusal after the decrement (the cap, or the end passing) undoes it in the same transaction:
  the row is still locked by us and nobody saw the uncommitted values, so restoring stock and version
  leaves no trace. Raising instead would abort a caller's surrounding transaction (the idempotency
  layer's) and cost a savepoint on every call.
- A refused UPDATE locks nothing; the refusal is explained by one read inside the same call.

Outcomes: 'bought' (purchase_id, created_at, current_stock, version), 'refused' (the sale's
current_stock, start_time, end_time and db_now, from which the caller names the refusal),
'over_cap' (held), 'not_found'.
"""

from django.db import migrations

from sales.sql import source

# The function as this migration first installed it; 0004 replaces it with v2.
CREATE = source("flashsale_purchase_v1")

DROP = "DROP FUNCTION IF EXISTS flashsale_purchase(bigint, bigint, integer, integer);"


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("sales", "0001_initial")]

    operations = [migrations.RunPython(create_function, drop_function)]
