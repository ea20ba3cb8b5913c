-- One-shot judgements of a fixed window (Kayenta's canary executions): requested over
-- the API, run once by whichever instance's worker claims it, read back by id from any
-- instance. No flag is moved. `request` and `result` are JSON the engine owns.
CREATE TABLE executions (
    -- Creation order.
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    id                  TEXT    NOT NULL UNIQUE,
    kind                TEXT    NOT NULL,
    -- What the caller judges again and again (Flagger: namespace, canary, checksum).
    key                 TEXT,
    profile_name        TEXT    NOT NULL,
    profile_text        TEXT    NOT NULL,
    source              TEXT    NOT NULL,
    request             TEXT    NOT NULL CHECK (json_valid(request)),
    state               TEXT    NOT NULL CHECK (state IN ('pending', 'running',
                            'succeeded', 'failed')),
    result              TEXT    NOT NULL DEFAULT 'null' CHECK (json_valid(result)),
    error               TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    due_at_ms           INTEGER NOT NULL,
    lease_owner         TEXT,
    lease_expires_at_ms INTEGER,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    finished_at_ms      INTEGER,
    CHECK ((lease_owner IS NULL) = (lease_expires_at_ms IS NULL))
);

-- claim_execution: the unfinished ones by due time.
CREATE INDEX executions_due ON executions (due_at_ms, seq)
    WHERE state IN ('pending', 'running');
-- prune_finished: the finished ones by age.
CREATE INDEX executions_finished ON executions (finished_at_ms)
    WHERE finished_at_ms IS NOT NULL;
-- latest_execution: the newest execution under a key.
CREATE INDEX executions_key ON executions (key, seq);
