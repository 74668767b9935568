-- The review server: users, login sessions, the review queue with leases, and the log of
-- what each reviewer did through it (for idempotent retries and the undo stack).
-- Decisions, comparisons and edited records themselves live in the tables of 0001 and 0002.
CREATE TABLE IF NOT EXISTS review_users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('reviewer', 'approver', 'admin')),
    password_hash TEXT NOT NULL,        -- argon2id, with its own salt and parameters
    active INTEGER NOT NULL DEFAULT 1,
    created_at {float} NOT NULL
);

-- A session is a random token held in an HttpOnly cookie; only its SHA-256 is stored.
CREATE TABLE IF NOT EXISTS review_sessions (
    token_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES review_users (name),
    csrf_token TEXT NOT NULL,
    created_at {float} NOT NULL,
    expires_at {float} NOT NULL
);
CREATE INDEX IF NOT EXISTS review_sessions_user ON review_sessions (user_name);

-- One row per (item, slot). An item is one candidate, or two of the same label for an A-vs-B
-- preference; it has [serve] overlap slots, each decided by a different reviewer. A slot is
-- open (done = 0) and free when its lease has expired; claiming it sets reviewer and
-- lease_until. review_queue_next makes "the first free slot" an index walk, not a scan.
CREATE TABLE IF NOT EXISTS review_queue (
    id {serial_pk},
    round INTEGER NOT NULL,
    item_key TEXT NOT NULL,             -- the record id, or "A_ID+B_ID" for a pair
    slot INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('single', 'pair')),
    record_id TEXT NOT NULL,
    other_id TEXT,                      -- the pair's B candidate
    priority INTEGER NOT NULL,          -- 0: label-doubt, 1: other candidates, 2: pairs
    done INTEGER NOT NULL DEFAULT 0,
    reviewer TEXT NOT NULL DEFAULT '',  -- holder of the lease, then the reviewer who decided
    lease_until {float} NOT NULL DEFAULT 0,
    served INTEGER NOT NULL DEFAULT 0,  -- leases granted on this slot so far
    decided_at {float},
    UNIQUE (item_key, slot)
);
CREATE INDEX IF NOT EXISTS review_queue_next ON review_queue (round, done, priority, id, lease_until);
CREATE INDEX IF NOT EXISTS review_queue_holder ON review_queue (reviewer, done, lease_until);
CREATE INDEX IF NOT EXISTS review_queue_record ON review_queue (record_id);

-- Every write a reviewer made through the server, keyed by the id the page generated for it:
-- a retried request finds its row and gets the same answer, so nothing is stored twice.
CREATE TABLE IF NOT EXISTS review_ops (
    id {serial_pk},
    client_id TEXT NOT NULL UNIQUE,
    reviewer TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('decision', 'comparison', 'undo', 'bulk', 'ranking')),
    round INTEGER NOT NULL,
    queue_id INTEGER,
    decision_id INTEGER,
    comparison_id INTEGER,
    undone INTEGER NOT NULL DEFAULT 0,  -- 1 once an undo withdrew it
    result TEXT NOT NULL,               -- JSON answer, sent again on a retry
    created_at {float} NOT NULL
);
CREATE INDEX IF NOT EXISTS review_ops_stack ON review_ops (reviewer, undone, id);
