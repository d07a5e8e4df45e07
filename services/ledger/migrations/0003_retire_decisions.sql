-- The processor's decisions are kept by the casebook (services/casebook), its own
-- service with its own schema, rebuilt from relief.decisions.v1 by replay: the ledger
-- keeps money only. Nothing is lost: every decision is still on the topic.
DROP TABLE relief_decisions;
