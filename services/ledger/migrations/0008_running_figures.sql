-- What finance's dashboard reads every second, at the cost of the batch instead of the book.
--
-- The million-request run showed the dashboard's snapshot reading the whole journal each
-- second it moved: every line summed for the balances, every entry counted by kind, every
-- posting of the day summed for today's figures. At a million postings that is two
-- million lines a second, taking the cores the writer needs. As 0005 did for the reserve
-- guard, the figures are now kept in rows moved by the statements that append to the
-- journal, in the same transaction:
--
--   ledger_balances     debits and credits of every account;
--   ledger_day_figures  per China Standard Time day, town and posting kind: how many
--                       postings, their debits, and the part of them paid out to
--                       households (relief_paid accounts: a payment's own figure).
--
-- Derived data, not the journal: only these triggers write it (SECURITY DEFINER, as the
-- owner; the service role may only read it), and `verify` recomputes every figure from
-- the journal and compares. Rows are per account and per town, and a town's postings are
-- written by one ledger consumer (its partition's), so two consumers contend only on the
-- county's own accounts (an escalation's hold), each statement locking them in account
-- order.
CREATE TABLE ledger_balances (
    account    text PRIMARY KEY REFERENCES ledger_accounts (code),
    debit_fen  bigint NOT NULL CHECK (debit_fen >= 0),
    credit_fen bigint NOT NULL CHECK (credit_fen >= 0)
);

CREATE TABLE ledger_day_figures (
    day        date NOT NULL,   -- of occurred_at, in China Standard Time (UTC+8, no DST)
    town       text NOT NULL,
    kind       text NOT NULL,
    postings   bigint NOT NULL CHECK (postings >= 0),
    debit_fen  bigint NOT NULL CHECK (debit_fen >= 0),
    paid_fen   bigint NOT NULL CHECK (paid_fen >= 0),  -- debits to relief_paid:<town>
    PRIMARY KEY (day, town, kind)
);

CREATE FUNCTION ledger_cst_day(at timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE AS $$ SELECT ((at AT TIME ZONE 'UTC') + interval '8 hours')::date $$;

INSERT INTO ledger_balances (account, debit_fen, credit_fen)
SELECT account,
       coalesce(sum(amount_fen) FILTER (WHERE side = 'debit'), 0)::bigint,
       coalesce(sum(amount_fen) FILTER (WHERE side = 'credit'), 0)::bigint
  FROM ledger_lines
 GROUP BY account;

INSERT INTO ledger_day_figures (day, town, kind, postings, debit_fen, paid_fen)
SELECT ledger_cst_day(e.occurred_at), e.town, e.kind, count(*),
       coalesce(sum(x.debit_fen), 0)::bigint, coalesce(sum(x.paid_fen), 0)::bigint
  FROM ledger_entries e
 CROSS JOIN LATERAL (
       SELECT sum(l.amount_fen) FILTER (WHERE l.side = 'debit') AS debit_fen,
              sum(l.amount_fen) FILTER (WHERE l.side = 'debit'
                                          AND l.account LIKE 'relief\_paid:%') AS paid_fen
         FROM ledger_lines l WHERE l.posting_id = e.posting_id) x
 GROUP BY 1, 2, 3;

-- entries: one more posting of its day, town and kind
CREATE FUNCTION ledger_count_entries() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO ledger_day_figures AS f (day, town, kind, postings, debit_fen, paid_fen)
    SELECT ledger_cst_day(occurred_at), town, kind, count(*), 0, 0
      FROM new_entries
     GROUP BY 1, 2, 3
     ORDER BY 1, 2, 3
    ON CONFLICT (day, town, kind) DO UPDATE SET postings = f.postings + EXCLUDED.postings;
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_entries_counted
    AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_count_entries();

-- lines: every account's debits and credits, and the amounts of their postings' day
CREATE FUNCTION ledger_sum_lines() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO ledger_balances AS b (account, debit_fen, credit_fen)
    SELECT account,
           coalesce(sum(amount_fen) FILTER (WHERE side = 'debit'), 0)::bigint,
           coalesce(sum(amount_fen) FILTER (WHERE side = 'credit'), 0)::bigint
      FROM new_lines
     GROUP BY account
     ORDER BY account
    ON CONFLICT (account) DO UPDATE
       SET debit_fen = b.debit_fen + EXCLUDED.debit_fen,
           credit_fen = b.credit_fen + EXCLUDED.credit_fen;
    INSERT INTO ledger_day_figures AS f (day, town, kind, postings, debit_fen, paid_fen)
    SELECT ledger_cst_day(e.occurred_at), e.town, e.kind, 0,
           coalesce(sum(n.amount_fen) FILTER (WHERE n.side = 'debit'), 0)::bigint,
           coalesce(sum(n.amount_fen) FILTER (WHERE n.side = 'debit'
                                                AND n.account LIKE 'relief\_paid:%'), 0)::bigint
      FROM (SELECT posting_id, account, side, amount_fen FROM new_lines) n
      CROSS JOIN LATERAL (SELECT occurred_at, town, kind FROM ledger_entries x
                           WHERE x.posting_id = n.posting_id) e
     GROUP BY 1, 2, 3
     ORDER BY 1, 2, 3
    ON CONFLICT (day, town, kind) DO UPDATE
       SET debit_fen = f.debit_fen + EXCLUDED.debit_fen,
           paid_fen = f.paid_fen + EXCLUDED.paid_fen;
    RETURN NULL;
END;
$$;

-- named to run after the lines' checks and the reserve guard (name order): figures are
-- only moved for lines that passed them
CREATE TRIGGER ledger_lines_summed
    AFTER INSERT ON ledger_lines
    REFERENCING NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_sum_lines();
