-- Indexes for the reads a round of millions of candidates makes: a round's candidates by origin,
-- and a round's verdicts by filter (how far each filter got) and by outcome (the filter report
-- reads only the verdicts that drop or flag a candidate).
CREATE INDEX IF NOT EXISTS records_origin_round ON records (origin, round);
CREATE INDEX IF NOT EXISTS verdicts_round_filter ON verdicts (round, filter);
CREATE INDEX IF NOT EXISTS verdicts_round_keep ON verdicts (round, keep);
