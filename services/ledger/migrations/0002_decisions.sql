-- The processor's decisions, as a read model beside the journal: a case's whole story
-- (refusals with their reasons, P9; deliberations, R6; deadlines, R5 and P1) and the open
-- deadlines towns must meet. Append-only like the journal (P10); one row per decision id,
-- so a redelivered decision is stored once. Positions go to ledger_positions, in the same
-- transaction, under the decisions topic's name.
CREATE TABLE relief_decisions (
    event_id         uuid PRIMARY KEY,
    type             text NOT NULL CHECK (length(type) BETWEEN 1 AND 64),
    town             text NOT NULL CHECK (town ~ '^\d{6,12}$'),
    case_id          text NOT NULL CHECK (length(case_id) BETWEEN 1 AND 64),
    rule             text NOT NULL CHECK (length(rule) BETWEEN 1 AND 32),
    occurred_at      timestamptz NOT NULL,
    recorded_at      timestamptz,
    body             jsonb NOT NULL,
    source_topic     text NOT NULL,
    source_partition integer NOT NULL CHECK (source_partition >= 0),
    source_offset    bigint NOT NULL CHECK (source_offset >= 0)
);
CREATE INDEX relief_decisions_case ON relief_decisions (town, case_id, occurred_at);

CREATE TRIGGER relief_decisions_no_change BEFORE UPDATE OR DELETE ON relief_decisions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER relief_decisions_no_truncate BEFORE TRUNCATE ON relief_decisions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
