-- The `generate` task: a record is a prompt (records.text) and a response, optionally with a
-- system text and a context. The parts beyond the prompt live in their own table, one row per
-- pair record (a classify record has none), audited like every other table.
CREATE TABLE IF NOT EXISTS record_parts (
    record_id TEXT PRIMARY KEY REFERENCES records (id),
    response TEXT NOT NULL,
    response_hash TEXT NOT NULL,
    system TEXT NOT NULL,
    context TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS record_parts_response_hash ON record_parts (response_hash);
