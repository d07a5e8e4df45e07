-- The fund ledger: accounts, journal entries (hash-chained per town), lines, alerts and
-- the consumer's positions. Applied by `python -m services.ledger migrate` as the owner
-- role (relief_owner); the service connects as relief_app, which is granted INSERT and
-- SELECT only (P10: funds accounted separately; records of aid must not be altered).

CREATE TABLE ledger_accounts (
    code        text PRIMARY KEY CHECK (length(code) <= 64),
    kind        text NOT NULL CHECK (kind IN (
                    'county_fund', 'charity_fund', 'town_reserve', 'town_reserve_held',
                    'county_held', 'relief_paid', 'recovery_receivable', 'recovered')),
    -- a town code, or 'county' for county-wide accounts
    town        text NOT NULL CHECK (town ~ '^(\d{6,12}|county)$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    normal_side text NOT NULL CHECK (normal_side IN ('debit', 'credit')),
    CHECK (code = kind || ':' || town)
);

-- One row per posting accepted into the book. `chain` is the posting's town (the Kafka
-- key): every town's postings arrive in order on one partition, so each town's chain is
-- the same on every replay however partitions interleave (DESIGN: "a replay gives the
-- same ledger, byte for byte").
CREATE TABLE ledger_entries (
    seq            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- insertion order, not hashed
    posting_id     uuid PRIMARY KEY,
    chain          text NOT NULL CHECK (length(chain) BETWEEN 1 AND 16),
    chain_seq      bigint NOT NULL CHECK (chain_seq > 0),
    kind           text NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    town           text NOT NULL CHECK (length(town) BETWEEN 1 AND 16),
    correlation_id text NOT NULL CHECK (length(correlation_id) BETWEEN 1 AND 64),
    causation_id   uuid,
    occurred_at    timestamptz NOT NULL,
    recorded_at    timestamptz,            -- the Kafka record timestamp, not hashed
    memo           text NOT NULL CHECK (length(memo) <= 2000),
    prev_hash      bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash           bytea NOT NULL CHECK (length(hash) = 32),
    -- where the posting was read (audit trail back to the log), not hashed
    source_topic     text NOT NULL,
    source_partition integer NOT NULL CHECK (source_partition >= 0),
    source_offset    bigint NOT NULL CHECK (source_offset >= 0),
    UNIQUE (chain, chain_seq),
    UNIQUE (hash)
);

CREATE TABLE ledger_lines (
    posting_id uuid NOT NULL REFERENCES ledger_entries (posting_id),
    line_no    smallint NOT NULL CHECK (line_no >= 1),
    account    text NOT NULL REFERENCES ledger_accounts (code),
    side       text NOT NULL CHECK (side IN ('debit', 'credit')),
    -- money is integer fen (DESIGN); a line moves a positive amount one way
    amount_fen bigint NOT NULL CHECK (amount_fen > 0),
    PRIMARY KEY (posting_id, line_no)
);
-- balances by account read only this index (index-only scans)
CREATE INDEX ledger_lines_account ON ledger_lines (account) INCLUDE (side, amount_fen);

-- Postings the reserve guard refused (R2: a town reserve never goes below zero). An
-- expected business outcome, so it is recorded with its figures, not dropped.
CREATE TABLE ledger_alerts (
    seq            bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    posting_id     uuid PRIMARY KEY,
    town           text NOT NULL,
    kind           text NOT NULL,
    reason         text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    account        text NOT NULL,
    balance_fen    bigint NOT NULL,   -- the account's balance before the posting
    change_fen     bigint NOT NULL,   -- what the posting would have changed it by
    occurred_at    timestamptz NOT NULL,
    posting        jsonb NOT NULL,    -- the refused posting as received
    source_topic     text NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    inserted_at    timestamptz NOT NULL DEFAULT now()
);

-- The consumer's position, stored in the same transaction as the postings it produced
-- (exactly once into PostgreSQL). Append-only like the rest: the service role cannot
-- UPDATE, so each batch adds a row and the position is the highest next_offset.
CREATE TABLE ledger_positions (
    topic       text NOT NULL,
    partition   integer NOT NULL CHECK (partition >= 0),
    next_offset bigint NOT NULL CHECK (next_offset >= 0),
    stored_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, next_offset)
);

-- ---------------------------------------------------------------- balanced, at commit

-- A posting's debits equal its credits and it has at least two lines. Deferred to the
-- commit so that the entry and its lines can be written in any order within it.
CREATE FUNCTION ledger_check_posting_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n_lines integer;
    debit_fen numeric;
    credit_fen numeric;
BEGIN
    SELECT count(*),
           coalesce(sum(amount_fen) FILTER (WHERE side = 'debit'), 0),
           coalesce(sum(amount_fen) FILTER (WHERE side = 'credit'), 0)
      INTO n_lines, debit_fen, credit_fen
      FROM ledger_lines WHERE posting_id = NEW.posting_id;
    IF n_lines < 2 OR debit_fen <> credit_fen THEN
        RAISE EXCEPTION 'posting % is not balanced: % lines, debits % fen, credits % fen',
            NEW.posting_id, n_lines, debit_fen, credit_fen
            USING ERRCODE = 'check_violation';  -- SQLSTATE 23514
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER ledger_entries_balanced
    AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_posting_balanced();

CREATE CONSTRAINT TRIGGER ledger_lines_balanced
    AFTER INSERT ON ledger_lines
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_posting_balanced();

-- ---------------------------------------------------------------- reserve guard

-- R2/R4: a town reserve (debit-normal) never goes below zero. The service refuses such a
-- posting before inserting it; this is the same invariant once more, in the database.
CREATE FUNCTION ledger_check_reserves() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    acct text;
    balance_fen numeric;
BEGIN
    -- only a credit can lower a debit-normal reserve; one index-only scan per account
    FOR acct IN SELECT DISTINCT account FROM new_lines
                 WHERE side = 'credit' AND account LIKE 'town\_reserve:%'
    LOOP
        SELECT coalesce(sum(CASE side WHEN 'debit' THEN amount_fen ELSE -amount_fen END), 0)
          INTO balance_fen
          FROM ledger_lines WHERE account = acct;
        IF balance_fen < 0 THEN
            RAISE EXCEPTION 'town reserve % would be % fen, below zero', acct, balance_fen
                USING ERRCODE = 'check_violation';  -- SQLSTATE 23514
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_lines_reserves_not_negative
    AFTER INSERT ON ledger_lines
    REFERENCING NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_check_reserves();

-- ---------------------------------------------------------------- append-only

-- P10: records of aid must not be altered. Even the owner cannot UPDATE, DELETE or
-- TRUNCATE these tables while the triggers are enabled; the service role lacks the
-- privileges in the first place.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'record a correcting posting instead';
END;
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ledger_accounts', 'ledger_entries', 'ledger_lines',
                             'ledger_alerts', 'ledger_positions']
    LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()',
                       t || '_no_change', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I
                        FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()',
                       t || '_no_truncate', t);
    END LOOP;
END;
$$;
