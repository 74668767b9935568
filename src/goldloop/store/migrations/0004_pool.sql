-- The real pool: unlabelled first-party records (origin 'pool', split 'pool') and the
-- model-suggested labels a reviewer confirmed or corrected (origin 'pool', no split). The
-- records table's CHECK constraints are widened for them by the dialect (see
-- SQLStore._allow_pool_records): SQLite cannot alter a CHECK with a statement.
-- Decisions say whether a simulated reviewer made them; simulated decisions never count as
-- human review.
ALTER TABLE decisions ADD COLUMN simulated INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS records_split_round ON records (split, round);
