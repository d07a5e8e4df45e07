-- A posting's lines checked once per statement instead of once per line.
--
-- Each line used to cost, at insert, two foreign-key checks (its entry, its account) and,
-- at commit, a balanced check of its whole posting (deferred, per row: the entry's and
-- each line's, so three a posting): in benchmarks/ledger_bench.py --breakdown, most of
-- the ledger's time. The same guarantees now cost one query per statement:
--
-- - the statement that inserts lines is refused unless every posting it touched has an
--   entry, every account exists, and every such posting — over all its lines, those of
--   earlier statements too — has at least two lines and debits equal to credits. A line
--   added later to a balanced posting unbalances it and is refused there. (Entries and
--   accounts are never removed: the append-only triggers refuse it, so what the check
--   saw stays true, as a foreign key would keep it.)
-- - the entry's own check stays deferred to the commit: an entry whose lines never came
--   is refused then.
--
-- The writer inserts every line of a batch in one COPY, so each posting is seen whole.
ALTER TABLE ledger_lines DROP CONSTRAINT ledger_lines_posting_id_fkey;
ALTER TABLE ledger_lines DROP CONSTRAINT ledger_lines_account_fkey;
DROP TRIGGER ledger_lines_balanced ON ledger_lines;

CREATE FUNCTION ledger_check_lines() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.posting_id INTO bad
      FROM (SELECT DISTINCT posting_id FROM new_lines) n
     WHERE NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.posting_id = n.posting_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'lines of posting % have no journal entry', bad.posting_id
            USING ERRCODE = 'foreign_key_violation';  -- SQLSTATE 23503
    END IF;
    SELECT n.account INTO bad
      FROM (SELECT DISTINCT account FROM new_lines) n
     WHERE NOT EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.code = n.account)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'account % does not exist', bad.account
            USING ERRCODE = 'foreign_key_violation';  -- SQLSTATE 23503
    END IF;
    SELECT l.posting_id, count(*) AS n_lines,
           coalesce(sum(l.amount_fen) FILTER (WHERE l.side = 'debit'), 0) AS debit_fen,
           coalesce(sum(l.amount_fen) FILTER (WHERE l.side = 'credit'), 0) AS credit_fen
      INTO bad
      FROM ledger_lines l
     WHERE l.posting_id IN (SELECT posting_id FROM new_lines)
     GROUP BY l.posting_id
    HAVING count(*) < 2
        OR coalesce(sum(l.amount_fen) FILTER (WHERE l.side = 'debit'), 0)
           <> coalesce(sum(l.amount_fen) FILTER (WHERE l.side = 'credit'), 0)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'posting % is not balanced: % lines, debits % fen, credits % fen',
            bad.posting_id, bad.n_lines, bad.debit_fen, bad.credit_fen
            USING ERRCODE = 'check_violation';  -- SQLSTATE 23514
    END IF;
    RETURN NULL;
END;
$$;

-- named to run before the reserve guard (statement triggers fire in name order)
CREATE TRIGGER ledger_lines_balanced
    AFTER INSERT ON ledger_lines
    REFERENCING NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_check_lines();
