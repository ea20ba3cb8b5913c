-- canary's store, SQLite. Times are Unix milliseconds (INTEGER, columns end in _ms).
-- JSON values are TEXT. One `canary serve` instance per file: SQLite has no
-- row locks, so claims are serialised by the database's single writer.

CREATE TABLE analyses (
    -- Creation order; the page cursor.
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    id                  TEXT    NOT NULL UNIQUE,
    profile_name        TEXT    NOT NULL,
    profile_text        TEXT    NOT NULL,
    flag                TEXT    NOT NULL,
    source              TEXT    NOT NULL,
    actuator            TEXT    NOT NULL,
    baseline_scope      TEXT    NOT NULL,
    canary_scope        TEXT    NOT NULL,
    dry_run             INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    start_at_ms         INTEGER,
    state               TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'paused',
                            'promoted', 'rolled_back', 'awaiting_review',
                            'rollback_failed', 'failed')),
    current_stage       INTEGER CHECK (current_stage >= 0),
    traffic             REAL,
    latest_verdict      TEXT,
    reasons             TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(reasons)),
    runner_state        TEXT    NOT NULL DEFAULT 'null' CHECK (json_valid(runner_state)),
    next_look_at_ms     INTEGER,
    version             INTEGER NOT NULL CHECK (version >= 1),
    lease_owner         TEXT,
    lease_expires_at_ms INTEGER,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    CHECK ((lease_owner IS NULL) = (lease_expires_at_ms IS NULL))
);

-- claim_due: the claimable analyses by due time.
CREATE INDEX analyses_due ON analyses (next_look_at_ms, seq)
    WHERE state IN ('pending', 'running');
-- list_analyses with a state filter.
CREATE INDEX analyses_state ON analyses (state, seq);

CREATE TABLE looks (
    analysis_id TEXT    NOT NULL REFERENCES analyses (id) ON DELETE CASCADE,
    look        INTEGER NOT NULL CHECK (look >= 0),
    at_ms       INTEGER NOT NULL,
    stage_index INTEGER NOT NULL CHECK (stage_index >= 0),
    verdict     TEXT    NOT NULL,
    decision    TEXT    NOT NULL,
    body        TEXT    NOT NULL CHECK (json_valid(body)),
    PRIMARY KEY (analysis_id, look)
);

CREATE TABLE actuations (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT    NOT NULL UNIQUE,
    analysis_id     TEXT    NOT NULL REFERENCES analyses (id) ON DELETE CASCADE,
    action          TEXT    NOT NULL,
    target          REAL    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('intended', 'applied', 'failed')),
    detail          TEXT,
    at_ms           INTEGER NOT NULL,
    completed_at_ms INTEGER
);
CREATE INDEX actuations_analysis ON actuations (analysis_id, seq);

CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    analysis_id TEXT    NOT NULL REFERENCES analyses (id) ON DELETE CASCADE,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL CHECK (action IN ('pause', 'resume', 'promote', 'rollback')),
    reason      TEXT    NOT NULL,
    from_state  TEXT    NOT NULL,
    to_state    TEXT    NOT NULL,
    at_ms       INTEGER NOT NULL
);
CREATE INDEX audit_log_analysis ON audit_log (analysis_id, seq);
