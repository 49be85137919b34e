"""The purchase as one PostgreSQL function, so the sale's row lock lives only inside the server.

`sales.services.purchase` calls `flashsale_purchase(user, sale, quantity, cap)` in autocommit: one
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

CREATE = """
CREATE OR REPLACE FUNCTION flashsale_purchase(
    p_user_id bigint, p_sale_id bigint, p_quantity integer, p_cap integer
) RETURNS TABLE (
    outcome text, purchase_id bigint, created_at timestamptz, current_stock integer,
    version bigint, start_time timestamptz, end_time timestamptz, held bigint, db_now timestamptz
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_stock integer;
    v_version bigint;
    v_start timestamptz;
    v_end timestamptz;
    v_at timestamptz;
    v_held bigint;
    v_id bigint;
BEGIN
    UPDATE sales_flashsale AS s
       SET current_stock = s.current_stock - p_quantity, version = s.version + 1
     WHERE s.id = p_sale_id
       AND s.current_stock >= p_quantity
       AND s.start_time <= clock_timestamp() AND s.end_time > clock_timestamp()
    RETURNING s.current_stock, s.version, s.start_time, s.end_time
         INTO v_stock, v_version, v_start, v_end;

    IF NOT FOUND THEN
        SELECT s.current_stock, s.start_time, s.end_time INTO v_stock, v_start, v_end
          FROM sales_flashsale AS s WHERE s.id = p_sale_id;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'not_found', NULL::bigint, NULL::timestamptz, NULL::integer,
                NULL::bigint, NULL::timestamptz, NULL::timestamptz, NULL::bigint, clock_timestamp();
            RETURN;
        END IF;
        RETURN QUERY SELECT 'refused', NULL::bigint, NULL::timestamptz, v_stock,
            NULL::bigint, v_start, v_end, NULL::bigint, clock_timestamp();
        RETURN;
    END IF;

    v_at := clock_timestamp();
    SELECT COALESCE(SUM(p.quantity), 0) INTO v_held
      FROM sales_purchase AS p WHERE p.sale_id = p_sale_id AND p.user_id = p_user_id;

    IF v_held + p_quantity > p_cap OR v_at >= v_end THEN
        UPDATE sales_flashsale AS s
           SET current_stock = s.current_stock + p_quantity, version = s.version - 1
         WHERE s.id = p_sale_id;
        IF v_at >= v_end THEN
            RETURN QUERY SELECT 'refused', NULL::bigint, NULL::timestamptz, v_stock + p_quantity,
                NULL::bigint, v_start, v_end, NULL::bigint, v_at;
        ELSE
            RETURN QUERY SELECT 'over_cap', NULL::bigint, NULL::timestamptz, NULL::integer,
                NULL::bigint, NULL::timestamptz, NULL::timestamptz, v_held, v_at;
        END IF;
        RETURN;
    END IF;

    INSERT INTO sales_purchase (user_id, sale_id, quantity, created_at)
    VALUES (p_user_id, p_sale_id, p_quantity, v_at)
    RETURNING id INTO v_id;

    RETURN QUERY SELECT 'bought', v_id, v_at, v_stock, v_version,
        v_start, v_end, v_held + p_quantity, v_at;
END;
$$;
"""

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
