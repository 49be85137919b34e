CREATE OR REPLACE FUNCTION flashsale_purchase(
    p_user_id bigint, p_sale_id bigint, p_quantity integer, p_buyer_limit integer, p_purchase_limit integer
) RETURNS TABLE (
    outcome text, purchase_id bigint, created_at timestamptz, current_stock integer,
    stock_version bigint, start_time timestamptz, end_time timestamptz, held bigint, db_now timestamptz,
    paused boolean, buyer_limit integer, purchase_limit integer, status text, expires_at timestamptz
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_stock integer;
    v_stock_version bigint;
    v_start timestamptz;
    v_end timestamptz;
    v_paused boolean;
    v_buyer_limit integer;
    v_purchase_limit integer;
    v_at timestamptz;
    v_held bigint;
    v_id bigint;
    v_hold integer;
    v_status text;
    v_expires timestamptz;
    v_waiting_room boolean;
    v_admitted_through integer;
    v_rate integer;
    v_position integer;
    v_until timestamptz;
BEGIN
    -- The limits are the sale's own when it has them, else the settings' (the parameters).
    UPDATE sales_flashsale AS s
       SET current_stock = s.current_stock - p_quantity, stock_version = s.stock_version + 1
     WHERE s.id = p_sale_id
       AND s.current_stock >= p_quantity
       AND NOT s.paused
       AND p_quantity <= LEAST(COALESCE(s.max_per_purchase, p_purchase_limit), p_purchase_limit)
       AND s.start_time <= clock_timestamp() AND s.end_time > clock_timestamp()
    RETURNING s.current_stock, s.stock_version, s.start_time, s.end_time, COALESCE(s.max_per_buyer, p_buyer_limit),
              s.hold_seconds, s.waiting_room, s.admitted_through, s.admit_per_second
         INTO v_stock, v_stock_version, v_start, v_end, v_buyer_limit, v_hold, v_waiting_room, v_admitted_through,
              v_rate;

    IF NOT FOUND THEN
        SELECT s.current_stock, s.start_time, s.end_time, s.paused, COALESCE(s.max_per_buyer, p_buyer_limit),
               LEAST(COALESCE(s.max_per_purchase, p_purchase_limit), p_purchase_limit)
          INTO v_stock, v_start, v_end, v_paused, v_buyer_limit, v_purchase_limit
          FROM sales_flashsale AS s WHERE s.id = p_sale_id;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'not_found', NULL::bigint, NULL::timestamptz, NULL::integer,
                NULL::bigint, NULL::timestamptz, NULL::timestamptz, NULL::bigint, clock_timestamp(),
                NULL::boolean, NULL::integer, NULL::integer, NULL::text, NULL::timestamptz;
            RETURN;
        END IF;
        RETURN QUERY SELECT 'refused', NULL::bigint, NULL::timestamptz, v_stock,
            NULL::bigint, v_start, v_end, NULL::bigint, clock_timestamp(),
            v_paused, v_buyer_limit, v_purchase_limit, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;

    v_at := clock_timestamp();
    -- A waiting-room sale sells only to a buyer whose place was admitted and whose admission still
    -- runs, judged under the same row lock and clock as the rest. The refusal reuses the result's
    -- columns (v4 keeps v3's result type): held = the place's position, current_stock = admitted
    -- through, buyer_limit = admitPerSecond, expires_at = the admission's end.
    IF v_waiting_room THEN
        SELECT q.position, q.admitted_until INTO v_position, v_until
          FROM sales_queueplace AS q WHERE q.sale_id = p_sale_id AND q.user_id = p_user_id;
        IF v_position IS NULL OR v_position > v_admitted_through OR v_until IS NULL OR v_until <= v_at THEN
            UPDATE sales_flashsale AS s
               SET current_stock = s.current_stock + p_quantity, stock_version = s.stock_version - 1
             WHERE s.id = p_sale_id;
            RETURN QUERY SELECT 'not_admitted', NULL::bigint, NULL::timestamptz, v_admitted_through,
                NULL::bigint, v_start, v_end, v_position::bigint, v_at,
                false, v_rate, NULL::integer, NULL::text, v_until;
            RETURN;
        END IF;
    END IF;
    -- Held and confirmed units count against the buyer's limit; released and expired ones came back.
    SELECT COALESCE(SUM(p.quantity), 0) INTO v_held
      FROM sales_purchase AS p
     WHERE p.sale_id = p_sale_id AND p.user_id = p_user_id AND p.status IN ('held', 'confirmed');

    IF v_held + p_quantity > v_buyer_limit OR v_at >= v_end THEN
        UPDATE sales_flashsale AS s
           SET current_stock = s.current_stock + p_quantity, stock_version = s.stock_version - 1
         WHERE s.id = p_sale_id;
        IF v_at >= v_end THEN
            RETURN QUERY SELECT 'refused', NULL::bigint, NULL::timestamptz, v_stock + p_quantity,
                NULL::bigint, v_start, v_end, NULL::bigint, v_at,
                false, v_buyer_limit, NULL::integer, NULL::text, NULL::timestamptz;
        ELSE
            RETURN QUERY SELECT 'over_limit', NULL::bigint, NULL::timestamptz, NULL::integer,
                NULL::bigint, NULL::timestamptz, NULL::timestamptz, v_held, v_at,
                false, v_buyer_limit, NULL::integer, NULL::text, NULL::timestamptz;
        END IF;
        RETURN;
    END IF;

    -- A sale with holds: the hold runs from the same clock reading that stamps the purchase.
    IF v_hold > 0 THEN
        v_status := 'held';
        v_expires := v_at + make_interval(secs => v_hold);
    ELSE
        v_status := 'confirmed';
        v_expires := NULL;
    END IF;

    INSERT INTO sales_purchase (user_id, sale_id, quantity, created_at, status, expires_at)
    VALUES (p_user_id, p_sale_id, p_quantity, v_at, v_status, v_expires)
    RETURNING id INTO v_id;

    RETURN QUERY SELECT 'bought', v_id, v_at, v_stock, v_stock_version,
        v_start, v_end, v_held + p_quantity, v_at,
        false, v_buyer_limit, NULL::integer, v_status, v_expires;
END;
$$;
