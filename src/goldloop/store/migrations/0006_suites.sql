-- Stress-test suites: drafted edge cases that models are scored on and never trained on.
-- Cases live apart from the records table, so no training path can select one; a reviewer's
-- decision on a case is its own row (the latest stands; 'undo' withdraws it); a frozen version holds its cases' text and expected label
-- and never changes (a new freeze makes a new version).
CREATE TABLE IF NOT EXISTS suite_cases (
    id TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    text TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    label TEXT NOT NULL,
    strategy TEXT NOT NULL,
    seeds TEXT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    request_key TEXT NOT NULL,
    dropped TEXT NOT NULL,
    created_at {float} NOT NULL{seq}
);
CREATE INDEX IF NOT EXISTS suite_cases_suite ON suite_cases (suite);
CREATE INDEX IF NOT EXISTS suite_cases_text_hash ON suite_cases (text_hash);
CREATE TABLE IF NOT EXISTS suite_decisions (
    id {serial_pk},
    case_id TEXT NOT NULL REFERENCES suite_cases (id),
    action TEXT NOT NULL CHECK (action IN ('accept', 'reject', 'correct', 'undo')),
    expected TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    simulated INTEGER NOT NULL DEFAULT 0,
    created_at {float} NOT NULL
);
CREATE INDEX IF NOT EXISTS suite_decisions_case ON suite_decisions (case_id);
CREATE TABLE IF NOT EXISTS suite_versions (
    suite TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    cases TEXT NOT NULL,
    created_at {float} NOT NULL,
    PRIMARY KEY (suite, version)
);
