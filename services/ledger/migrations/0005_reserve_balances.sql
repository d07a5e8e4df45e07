-- The reserve guard, at the cost of the batch instead of the book (R4: a town reserve
-- never goes below zero).
--
-- Until now the guard summed every line of each reserve account a batch credited, and
-- the writer did the same to plan the batch: a cost that grew with the book (at a
-- million postings, ~100,000 lines a town read again on every batch). Now each reserve's
-- balance is kept in a row, moved by the guard itself as lines arrive, in the same
-- statement: the guard reads and checks one row per account, the writer reads the rows.
--
-- Derived data, not the journal: only the guard writes it (SECURITY DEFINER, as the
-- owner; the service role may only read it), and `verify` recomputes every balance from
-- the lines and compares.
CREATE TABLE ledger_reserve_balances (
    account     text PRIMARY KEY REFERENCES ledger_accounts (code)
                CHECK (account LIKE 'town\_reserve:%'),
    balance_fen bigint NOT NULL
);

INSERT INTO ledger_reserve_balances (account, balance_fen)
SELECT account, sum(CASE side WHEN 'debit' THEN amount_fen ELSE -amount_fen END)::bigint
  FROM ledger_lines
 WHERE account LIKE 'town\_reserve:%'
 GROUP BY account;

CREATE OR REPLACE FUNCTION ledger_check_reserves() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    acct text;
    balance_fen bigint;
BEGIN
    -- every reserve the statement moved, in account order (two writers never deadlock)
    FOR acct, balance_fen IN
        INSERT INTO ledger_reserve_balances AS b (account, balance_fen)
        SELECT account,
               sum(CASE side WHEN 'debit' THEN amount_fen ELSE -amount_fen END)::bigint
          FROM new_lines
         WHERE account LIKE 'town\_reserve:%'
         GROUP BY account
         ORDER BY account
        ON CONFLICT (account) DO UPDATE SET balance_fen = b.balance_fen + EXCLUDED.balance_fen
        RETURNING b.account, b.balance_fen
    LOOP
        IF balance_fen < 0 THEN
            RAISE EXCEPTION 'town reserve % would be % fen, below zero', acct, balance_fen
                USING ERRCODE = 'check_violation';  -- SQLSTATE 23514
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;
