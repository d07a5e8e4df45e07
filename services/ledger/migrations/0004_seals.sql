-- Seals: an HMAC-SHA256 under the ledger writer's chain key (RELIEF_LEDGER_CHAIN_KEY), which
-- no database role holds. The hash chain alone is unkeyed: anyone with INSERT could append
-- an entry that passes it (or a position that skips postings, or an alert that makes a real
-- posting look like a duplicate). A row without the writer's seal is caught by `verify`,
-- and the writer stops rather than build on it (P10: records of aid must not be altered).
--
-- Rows stored before this migration keep a NULL seal (verify reports them: a ledger from
-- before the chain key is rebuilt by replaying ledger.postings.v1). Every row inserted
-- from now on must carry one: NOT VALID checks new rows only.
ALTER TABLE ledger_entries ADD COLUMN seal bytea;
ALTER TABLE ledger_alerts ADD COLUMN seal bytea;
ALTER TABLE ledger_positions ADD COLUMN seal bytea;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_sealed
    CHECK (seal IS NOT NULL AND length(seal) = 32) NOT VALID;
ALTER TABLE ledger_alerts ADD CONSTRAINT ledger_alerts_sealed
    CHECK (seal IS NOT NULL AND length(seal) = 32) NOT VALID;
ALTER TABLE ledger_positions ADD CONSTRAINT ledger_positions_sealed
    CHECK (seal IS NOT NULL AND length(seal) = 32) NOT VALID;
