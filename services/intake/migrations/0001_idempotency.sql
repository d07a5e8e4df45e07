-- Idempotency keys, shared by every intake instance and kept across restarts (issue:
-- idempotency in one process's memory while two replicas run). One row per
-- (organisation, key): the request's fingerprint (keyed digests of its fields, never a
-- value: no ID number in clear nor a guessable hash of one), the first answer, and how long
-- the key is kept. While a request is being produced the answer is NULL and the row is
-- claimed until `claimed_until`: another instance waits, or takes over a claim whose
-- holder died. Applied by `python -m services.intake migrate` as the owner role.
CREATE TABLE intake.idempotency (
    org           text NOT NULL CHECK (length(org) BETWEEN 1 AND 200),
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    operation     text NOT NULL CHECK (length(operation) BETWEEN 1 AND 200),
    fields        jsonb NOT NULL,
    status        smallint CHECK (status BETWEEN 100 AND 599),
    answer        jsonb,
    claimed_until timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (org, key),
    CHECK ((status IS NULL) = (answer IS NULL))
);
CREATE INDEX idempotency_expiry ON intake.idempotency (expires_at);
