-- A decision's seal: an HMAC-SHA256 under the casebook writer's key
-- (RELIEF_CASEBOOK_SEAL_KEY), which no database role holds. The service role may INSERT
-- into the story; without the key, a decision it adds (a refusal nobody decided, a grant
-- nobody made) is named by `python -m services.casebook verify`. Rows stored before this
-- migration have none (verify reports them; `rebuild` replays the topics and seals all).
ALTER TABLE casebook.decisions ADD COLUMN seal bytea;
ALTER TABLE casebook.decisions ADD CONSTRAINT decisions_sealed
    CHECK (seal IS NOT NULL AND length(seal) = 32) NOT VALID;
