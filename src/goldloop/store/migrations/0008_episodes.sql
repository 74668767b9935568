-- The trajectory task: episodes (an agent's steps in a simulator, or a real operator's log), the
-- filters' verdicts on drafted ones and reviewers' answers. An episode is content-addressed (its
-- id hashes the environment, the seed and the steps) and never changes; its steps are stored as
-- JSON. A review is its own row (the latest stands; 'undo' withdraws it).
CREATE TABLE IF NOT EXISTS episodes (
    id TEXT PRIMARY KEY,
    env_id TEXT NOT NULL,
    seed BIGINT,
    origin TEXT NOT NULL CHECK (origin IN ('gold', 'synthetic', 'edited')),
    split TEXT CHECK (split IN ('train', 'heldout')),
    round INTEGER NOT NULL,
    strategy TEXT NOT NULL,
    parents TEXT NOT NULL,
    policy TEXT NOT NULL,
    params TEXT NOT NULL,
    source TEXT NOT NULL,
    total_return {float} NOT NULL,
    length INTEGER NOT NULL,
    steps TEXT NOT NULL,
    created_at {float} NOT NULL{seq},
    CHECK ((origin = 'gold' AND split IN ('train', 'heldout')) OR (origin <> 'gold' AND split IS NULL))
);
CREATE INDEX IF NOT EXISTS episodes_origin_split ON episodes (origin, split);
CREATE INDEX IF NOT EXISTS episodes_round ON episodes (round);
CREATE TABLE IF NOT EXISTS episode_verdicts (
    episode_id TEXT NOT NULL REFERENCES episodes (id),
    filter TEXT NOT NULL,
    round INTEGER NOT NULL,
    keep INTEGER NOT NULL,
    score {float},
    reason TEXT NOT NULL,
    PRIMARY KEY (episode_id, filter, round)
);
CREATE INDEX IF NOT EXISTS episode_verdicts_round ON episode_verdicts (round);
CREATE TABLE IF NOT EXISTS episode_reviews (
    id {serial_pk},
    episode_id TEXT NOT NULL REFERENCES episodes (id),
    action TEXT NOT NULL CHECK (action IN ('accept', 'reject', 'correct', 'undo')),
    step INTEGER,
    new_action INTEGER,
    reviewer TEXT NOT NULL,
    simulated INTEGER NOT NULL DEFAULT 0,
    round INTEGER NOT NULL,
    created_at {float} NOT NULL
);
CREATE INDEX IF NOT EXISTS episode_reviews_episode ON episode_reviews (episode_id);
