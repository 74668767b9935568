-- The foundation schema. Rows are only ever added: a later stage adds verdicts, decisions or
-- snapshots; it never changes what an earlier stage wrote.
-- Placeholders: {serial_pk} an auto-increment integer key, {float} double precision, {blob}
-- bytes, {seq} an insertion-order column where the database has no rowid.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    label TEXT NOT NULL,
    origin TEXT NOT NULL CHECK (origin IN ('gold', 'synthetic', 'edited')),
    split TEXT CHECK (split IN ('train', 'heldout')),
    round INTEGER NOT NULL DEFAULT 0,
    created_at {float} NOT NULL{seq},
    CHECK ((origin = 'gold') = (split IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS records_origin ON records (origin, split);
CREATE INDEX IF NOT EXISTS records_round ON records (round);
CREATE INDEX IF NOT EXISTS records_text_hash ON records (text_hash);

CREATE TABLE IF NOT EXISTS provenance (
    record_id TEXT PRIMARY KEY REFERENCES records (id),
    parents TEXT NOT NULL,          -- JSON list of record ids
    strategy TEXT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    params TEXT NOT NULL,           -- JSON object of sampling parameters
    template_hash TEXT NOT NULL,
    request_key TEXT NOT NULL,
    round INTEGER NOT NULL,
    source TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    created_at {float} NOT NULL
);

-- One row per input row of every ingest, kept or not, so no row vanishes unexplained.
CREATE TABLE IF NOT EXISTS ingest_rows (
    batch TEXT NOT NULL,
    source TEXT NOT NULL,
    row INTEGER NOT NULL,
    record_id TEXT,
    status TEXT NOT NULL,           -- added | duplicate
    reason TEXT NOT NULL,
    PRIMARY KEY (batch, row)
);

CREATE TABLE IF NOT EXISTS verdicts (
    id {serial_pk},
    record_id TEXT NOT NULL REFERENCES records (id),
    filter TEXT NOT NULL,
    keep INTEGER NOT NULL,
    score {float},
    reason TEXT NOT NULL,
    flag TEXT NOT NULL DEFAULT '',
    round INTEGER NOT NULL,
    created_at {float} NOT NULL,
    UNIQUE (record_id, filter, round)
);

CREATE TABLE IF NOT EXISTS decisions (
    id {serial_pk},
    record_id TEXT NOT NULL REFERENCES records (id),
    action TEXT NOT NULL CHECK (action IN ('accept', 'reject', 'edit', 'skip', 'undo')),
    reviewer TEXT NOT NULL,
    round INTEGER NOT NULL,
    new_record_id TEXT REFERENCES records (id),
    created_at {float} NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_record ON decisions (record_id);

-- Every generation request, by content-addressed key; a reply is committed with its records.
CREATE TABLE IF NOT EXISTS generations (
    request_key TEXT PRIMARY KEY,
    round INTEGER NOT NULL,
    strategy TEXT NOT NULL,
    label TEXT NOT NULL,
    prompt TEXT NOT NULL,
    status TEXT NOT NULL,           -- ok | failed
    reply TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    seconds {float} NOT NULL,
    created_at {float} NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL{seq}
);

CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    round INTEGER NOT NULL,
    manifest TEXT NOT NULL,
    created_at {float} NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_records (
    snapshot_id TEXT NOT NULL REFERENCES snapshots (id),
    record_id TEXT NOT NULL REFERENCES records (id){seq},
    PRIMARY KEY (snapshot_id, record_id)
);

CREATE TABLE IF NOT EXISTS rounds (
    number INTEGER PRIMARY KEY,
    status TEXT NOT NULL,           -- open | done
    started_at {float} NOT NULL,
    finished_at {float},
    snapshot_id TEXT,
    metrics TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE IF NOT EXISTS events (
    id {serial_pk},
    at {float} NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector {blob} NOT NULL,           -- float32, little-endian
    PRIMARY KEY (model, text_hash)
);
