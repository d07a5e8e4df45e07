-- The lines' checks of 0006, driven from the statement's postings by index.
--
-- The million-request run showed the ledger slowing as the book grew: the planner knows
-- nothing of a transition table's size, and ran 0006's balanced check as a merge join
-- over the whole of ledger_lines' primary key (830,000 rows read for a batch of 2,000
-- postings, 0.6 s). Each posting of the statement now looks up its own lines and its
-- entry through their indexes (LATERAL), so a batch costs the same on an empty book and
-- on a full one. The guarantees are 0006's, unchanged.
CREATE OR REPLACE FUNCTION ledger_check_lines() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.posting_id INTO bad
      FROM (SELECT DISTINCT posting_id FROM new_lines) n
      LEFT JOIN LATERAL (SELECT 1 AS found FROM ledger_entries e
                          WHERE e.posting_id = n.posting_id LIMIT 1) x ON true
     WHERE x.found IS NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'lines of posting % have no journal entry', bad.posting_id
            USING ERRCODE = 'foreign_key_violation';  -- SQLSTATE 23503
    END IF;
    SELECT n.account INTO bad
      FROM (SELECT DISTINCT account FROM new_lines) n
      LEFT JOIN LATERAL (SELECT 1 AS found FROM ledger_accounts a
                          WHERE a.code = n.account LIMIT 1) x ON true
     WHERE x.found IS NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'account % does not exist', bad.account
            USING ERRCODE = 'foreign_key_violation';  -- SQLSTATE 23503
    END IF;
    SELECT n.posting_id, x.n_lines, x.debit_fen, x.credit_fen INTO bad
      FROM (SELECT DISTINCT posting_id FROM new_lines) n
      CROSS JOIN LATERAL (
          SELECT count(*) AS n_lines,
                 coalesce(sum(l.amount_fen) FILTER (WHERE l.side = 'debit'), 0) AS debit_fen,
                 coalesce(sum(l.amount_fen) FILTER (WHERE l.side = 'credit'), 0) AS credit_fen
            FROM ledger_lines l
           WHERE l.posting_id = n.posting_id) x
     WHERE x.n_lines < 2 OR x.debit_fen <> x.credit_fen
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'posting % is not balanced: % lines, debits % fen, credits % fen',
            bad.posting_id, bad.n_lines, bad.debit_fen, bad.credit_fen
            USING ERRCODE = 'check_violation';  -- SQLSTATE 23514
    END IF;
    RETURN NULL;
END;
$$;
