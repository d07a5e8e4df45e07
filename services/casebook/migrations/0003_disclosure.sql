-- Public disclosure (P7, section 十): expenditure-type relief is published within N
-- working days of its approval. The casebook keeps, per case, what may be published
-- (the masked name the request carried, the approval's date, level and amount), and
-- every publication a town recorded (DisclosurePublished on the intake topic).

ALTER TABLE casebook.cases
    -- "张＊＊": the first character and a full-width star for each further one; the clear
    -- name never reaches the log, so it cannot reach this table
    ADD COLUMN public_name    text CHECK (public_name ~ '^[^\s\d＊*·•]＊+$'
                                          AND length(public_name) <= 30),
    ADD COLUMN approved_at    timestamptz,  -- the first ReliefApproved's occurred_at
    -- its month in China Standard Time, "2026-03": the period of the disclosure list
    ADD COLUMN approved_period text CHECK (approved_period ~ '^\d{4}-(0[1-9]|1[0-2])$'),
    ADD COLUMN approver_level text CHECK (approver_level IN ('town', 'county')),
    ADD COLUMN approved_fen   bigint CHECK (approved_fen > 0);

-- the disclosure list of a town and month: expenditure-type cases approved in it
CREATE INDEX cases_disclosure ON casebook.cases (town, approved_period, approved_at)
    WHERE urgency = 'expenditure' AND approved_at IS NOT NULL;

-- Publications, as recorded: append-only. A publication covers the cases of its town and
-- period approved before its published_at (the broker's stamp of the record).
CREATE TABLE casebook.publications (
    event_id         uuid PRIMARY KEY,
    town             text NOT NULL CHECK (town ~ '^\d{6,12}$'),
    period           text NOT NULL CHECK (period ~ '^\d{4}-(0[1-9]|1[0-2])$'),
    published_at     timestamptz NOT NULL,
    org              text NOT NULL CHECK (length(org) BETWEEN 1 AND 100),
    note             text NOT NULL CHECK (length(note) <= 2000),
    source_partition integer NOT NULL CHECK (source_partition >= 0),
    source_offset    bigint NOT NULL CHECK (source_offset >= 0)
);
CREATE INDEX publications_period ON casebook.publications (town, period, published_at);
CREATE TRIGGER publications_no_change BEFORE UPDATE OR DELETE ON casebook.publications
    FOR EACH ROW EXECUTE FUNCTION casebook.refuse_change();
CREATE TRIGGER publications_no_truncate BEFORE TRUNCATE ON casebook.publications
    FOR EACH STATEMENT EXECUTE FUNCTION casebook.refuse_change();
