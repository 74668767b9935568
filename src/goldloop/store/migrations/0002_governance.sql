-- Reviewer preferences (A over B, rankings), the hash-chained audit log, sign-offs, policy
-- overrides and the models trained on each snapshot.

CREATE TABLE IF NOT EXISTS comparisons (
    id {serial_pk},
    a_id TEXT NOT NULL REFERENCES records (id),
    b_id TEXT NOT NULL REFERENCES records (id),
    winner TEXT NOT NULL CHECK (winner IN ('a', 'b', 'undo')),
    reviewer TEXT NOT NULL,
    round INTEGER NOT NULL,
    created_at {float} NOT NULL
);
CREATE INDEX IF NOT EXISTS comparisons_round ON comparisons (round);

CREATE TABLE IF NOT EXISTS rankings (
    id {serial_pk},
    record_ids TEXT NOT NULL,       -- JSON list of record ids, best first
    reviewer TEXT NOT NULL,
    round INTEGER NOT NULL,
    created_at {float} NOT NULL
);

-- Every write a stage or a person makes, chained: hash = sha256(prev_hash + this entry).
CREATE TABLE IF NOT EXISTS audit_log (
    seq {serial_pk},
    at {float} NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,          -- JSON; "rows" lists [table, key, digest] of what was written
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS signoffs (
    id {serial_pk},
    snapshot_id TEXT NOT NULL REFERENCES snapshots (id),
    approver TEXT NOT NULL,
    use_case TEXT NOT NULL,
    note TEXT NOT NULL,
    created_at {float} NOT NULL
);

CREATE TABLE IF NOT EXISTS overrides (
    id {serial_pk},
    snapshot_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    stage TEXT NOT NULL,            -- snapshot | export | train
    approver TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at {float} NOT NULL
);

CREATE TABLE IF NOT EXISTS trainings (
    id {serial_pk},
    snapshot_id TEXT NOT NULL REFERENCES snapshots (id),
    trainer TEXT NOT NULL,
    model TEXT NOT NULL,            -- what was trained: a name, path or registry id
    metrics TEXT NOT NULL,          -- JSON
    created_at {float} NOT NULL
);
CREATE INDEX IF NOT EXISTS trainings_snapshot ON trainings (snapshot_id);
