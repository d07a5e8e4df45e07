-- The casebook: the one read side of cases, folded from the processor's decisions, the
-- dead letters and the intake topic. Everything here is a projection of the Kafka log:
-- `python -m services.casebook rebuild` drops the schema and replays it, and the rows
-- come out the same. No row holds an insertion time or anything else a replay changes.
-- Applied by `python -m services.casebook migrate` as the owner role.

-- Every decision, as the processor wrote it: append-only (nobody edits a case's story).
CREATE TABLE casebook.decisions (
    event_id         uuid PRIMARY KEY,
    town             text NOT NULL CHECK (town ~ '^\d{6,12}$'),
    case_id          text NOT NULL CHECK (length(case_id) BETWEEN 1 AND 64),
    type             text NOT NULL CHECK (length(type) BETWEEN 1 AND 64),
    rule             text NOT NULL CHECK (length(rule) BETWEEN 1 AND 32),
    case_status      text CHECK (length(case_status) <= 32),
    causation_id     uuid,
    occurred_at      timestamptz NOT NULL,
    recorded_at      timestamptz,
    amount_fen       bigint,
    reason           text CHECK (length(reason) <= 2000),
    figures          jsonb NOT NULL,
    body             jsonb NOT NULL,
    source_partition integer NOT NULL CHECK (source_partition >= 0),
    source_offset    bigint NOT NULL CHECK (source_offset >= 0)
);
-- a case's story, in log order (a town's decisions are all on its partition)
CREATE INDEX decisions_case ON casebook.decisions (town, case_id, source_offset);
-- a submission's decisions
CREATE INDEX decisions_causation ON casebook.decisions (causation_id);

CREATE FUNCTION casebook.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'casebook.decisions is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER decisions_no_change BEFORE UPDATE OR DELETE ON casebook.decisions
    FOR EACH ROW EXECUTE FUNCTION casebook.refuse_change();
CREATE TRIGGER decisions_no_truncate BEFORE TRUNCATE ON casebook.decisions
    FOR EACH STATEMENT EXECUTE FUNCTION casebook.refuse_change();

-- Where each case stands: one row per (town, case id) — a case id is unique only within
-- its town. Status and figures are the decisions' own (domain/fold.py).
CREATE TABLE casebook.cases (
    town         text NOT NULL CHECK (town ~ '^\d{6,12}$'),
    case_id      text NOT NULL CHECK (length(case_id) BETWEEN 1 AND 64),
    status       text NOT NULL CHECK (length(status) BETWEEN 1 AND 32),
    -- what the request registered, as the case's first decision carries it
    category     text CHECK (length(category) <= 32),
    urgency      text CHECK (urgency IN ('urgent', 'expenditure')),
    requested_fen bigint CHECK (requested_fen > 0),
    incident_id  text CHECK (length(incident_id) <= 64),
    funded_by    text CHECK (funded_by IN ('town_reserve', 'county_fund')),
    granted_fen  bigint NOT NULL CHECK (granted_fen >= 0),
    paid_fen     bigint NOT NULL CHECK (paid_fen >= 0),
    recovery_fen bigint NOT NULL CHECK (recovery_fen >= 0),
    granted_at   timestamptz,
    opened_at    timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    decisions    integer NOT NULL CHECK (decisions > 0),
    last_type    text NOT NULL,
    last_rule    text NOT NULL,
    PRIMARY KEY (town, case_id)
);
-- unpaid advances, for the finance dashboard
CREATE INDEX cases_unpaid ON casebook.cases (granted_at, town, case_id)
    WHERE status IN ('advanced', 'escalated');

-- Deadlines as the grants state them (R5: relief within 24 h, P1: paperwork within
-- 5 days), and how each ended.
CREATE TABLE casebook.deadlines (
    town      text NOT NULL,
    case_id   text NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('relief_24h', 'paperwork_5d')),
    due_at    timestamptz NOT NULL,
    state     text NOT NULL CHECK (state IN ('open', 'warned', 'met', 'breached', 'void')),
    opened_by uuid NOT NULL,
    closed_by uuid,
    PRIMARY KEY (town, case_id, kind)
);
CREATE INDEX deadlines_open ON casebook.deadlines (town, due_at, case_id)
    WHERE state IN ('open', 'warned');

-- Records intake accepted (clock ticks are not submissions), as read from the intake
-- topic: whose, which town, and where in the log.
CREATE TABLE casebook.submissions (
    event_id         uuid PRIMARY KEY,
    type             text NOT NULL CHECK (length(type) BETWEEN 1 AND 64),
    town             text NOT NULL CHECK (town ~ '^\d{6,12}$'),
    correlation_id   text NOT NULL CHECK (length(correlation_id) BETWEEN 1 AND 64),
    org              text NOT NULL CHECK (length(org) <= 100),
    source_partition integer NOT NULL CHECK (source_partition >= 0),
    source_offset    bigint NOT NULL CHECK (source_offset >= 0)
);

-- Dead letters of intake records: why the processor refused each (masked).
CREATE TABLE casebook.rejections (
    rejected_id      uuid PRIMARY KEY,
    source_event_id  uuid,
    source_type      text,
    town             text,
    reason           text NOT NULL CHECK (length(reason) <= 1000),
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL
);
CREATE INDEX rejections_event ON casebook.rejections (source_event_id);

-- The consumer's positions, written in the same transaction as the rows they produced.
CREATE TABLE casebook.positions (
    topic       text NOT NULL,
    partition   integer NOT NULL CHECK (partition >= 0),
    next_offset bigint NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (topic, partition)
);

-- How far the processor has got on the intake topic (its committed offsets), recorded
-- only once the casebook has read everything the processor had sent by then. Not a
-- projection of the log but an observation of it, so a rebuild starts it again.
CREATE TABLE casebook.progress (
    partition         integer PRIMARY KEY CHECK (partition >= 0),
    processed_through bigint NOT NULL CHECK (processed_through >= 0)
);
