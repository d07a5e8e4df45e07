-- Hardship lists from departments (section 二, "policy finds people") and county civil
-- affairs' written follow-up of each row (P9), folded from the intake topic
-- (HardshipListPushed, HardshipFollowedUp; services/casebook/domain/hardship.py).
-- All three tables are append-only: a row waits until a follow-up of it is kept, and the
-- first follow-up of a row stands (a later one is refused, into casebook.rejections, so
-- its submission answers `rejected` with the reason).

CREATE TABLE casebook.hardship_lists (
    event_id         uuid PRIMARY KEY,  -- the HardshipListPushed record's
    town             text NOT NULL CHECK (town ~ '^\d{6,12}$'),
    department       text NOT NULL CHECK (length(department) BETWEEN 1 AND 100),
    org              text NOT NULL CHECK (length(org) BETWEEN 1 AND 100),
    correlation_id   text NOT NULL CHECK (length(correlation_id) BETWEEN 1 AND 64),
    occurred_at      timestamptz NOT NULL,
    pushed_at        timestamptz NOT NULL,  -- the broker's stamp
    rows             integer NOT NULL CHECK (rows BETWEEN 1 AND 5000),
    source_partition integer NOT NULL CHECK (source_partition >= 0),
    source_offset    bigint NOT NULL CHECK (source_offset >= 0)
);

-- One row per household of a list, as the department pushed it. household_ref is the
-- keyed hash intake made of the ID number: the number itself never reaches the log.
CREATE TABLE casebook.hardship_rows (
    list_event_id uuid NOT NULL REFERENCES casebook.hardship_lists (event_id),
    row_index     integer NOT NULL CHECK (row_index BETWEEN 0 AND 4999),
    town          text NOT NULL CHECK (town ~ '^\d{6,12}$'),
    household_ref text NOT NULL CHECK (household_ref ~ '^h_[0-9a-f]{32}$'),
    category      text NOT NULL CHECK (category IN ('minimum_living', 'extreme_poverty',
                      'registered_poor', 'disaster_urgent', 'vagrant', 'disabled',
                      'continuing_expenditure', 'elderly_women_children', 'legal_case',
                      'left_behind')),
    note          text NOT NULL CHECK (length(note) <= 2000),
    PRIMARY KEY (list_event_id, row_index)
);

-- The follow-up kept for a row: at most one (the first in the log), with its reasons.
CREATE TABLE casebook.hardship_follow_ups (
    event_id         uuid PRIMARY KEY,  -- the HardshipFollowedUp record's
    list_event_id    uuid NOT NULL,
    row_index        integer NOT NULL,
    town             text NOT NULL CHECK (town ~ '^\d{6,12}$'),
    outcome          text NOT NULL CHECK (outcome IN ('case_opened', 'no_relief_needed',
                                                      'referred')),
    case_id          text CHECK (length(case_id) BETWEEN 1 AND 64),
    referred_to      text CHECK (length(referred_to) BETWEEN 1 AND 200),
    reasons          text NOT NULL CHECK (length(reasons) BETWEEN 1 AND 2000),  -- P9
    decided_by       text NOT NULL CHECK (length(decided_by) BETWEEN 1 AND 100),
    org              text NOT NULL CHECK (length(org) BETWEEN 1 AND 100),
    occurred_at      timestamptz NOT NULL,
    decided_at       timestamptz NOT NULL,  -- the broker's stamp
    source_partition integer NOT NULL CHECK (source_partition >= 0),
    source_offset    bigint NOT NULL CHECK (source_offset >= 0),
    UNIQUE (list_event_id, row_index),  -- the first decision on a row stands
    FOREIGN KEY (list_event_id, row_index)
        REFERENCES casebook.hardship_rows (list_event_id, row_index),
    CHECK ((outcome = 'case_opened') = (case_id IS NOT NULL)),
    CHECK ((outcome = 'referred') = (referred_to IS NOT NULL))
);

CREATE INDEX hardship_lists_town ON casebook.hardship_lists (town, pushed_at);
CREATE INDEX hardship_follow_ups_town ON casebook.hardship_follow_ups (town, decided_at);

CREATE TRIGGER hardship_lists_no_change BEFORE UPDATE OR DELETE ON casebook.hardship_lists
    FOR EACH ROW EXECUTE FUNCTION casebook.refuse_change();
CREATE TRIGGER hardship_lists_no_truncate BEFORE TRUNCATE ON casebook.hardship_lists
    FOR EACH STATEMENT EXECUTE FUNCTION casebook.refuse_change();
CREATE TRIGGER hardship_rows_no_change BEFORE UPDATE OR DELETE ON casebook.hardship_rows
    FOR EACH ROW EXECUTE FUNCTION casebook.refuse_change();
CREATE TRIGGER hardship_rows_no_truncate BEFORE TRUNCATE ON casebook.hardship_rows
    FOR EACH STATEMENT EXECUTE FUNCTION casebook.refuse_change();
CREATE TRIGGER hardship_follow_ups_no_change BEFORE UPDATE OR DELETE
    ON casebook.hardship_follow_ups
    FOR EACH ROW EXECUTE FUNCTION casebook.refuse_change();
CREATE TRIGGER hardship_follow_ups_no_truncate BEFORE TRUNCATE ON casebook.hardship_follow_ups
    FOR EACH STATEMENT EXECUTE FUNCTION casebook.refuse_change();
