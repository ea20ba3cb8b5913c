-- canary's store, PostgreSQL. Times are Unix milliseconds (bigint, columns end in _ms)
-- so both stores compare times the same way; JSON is jsonb. Several `canary serve`
-- instances share these tables; claims lock rows with FOR UPDATE SKIP LOCKED.

CREATE TABLE analyses (
    id                  uuid             PRIMARY KEY,
    -- Creation order; the page cursor.
    seq                 bigint           GENERATED ALWAYS AS IDENTITY UNIQUE,
    profile_name        text             NOT NULL,
    profile_text        text             NOT NULL,
    flag                text             NOT NULL,
    source              text             NOT NULL,
    actuator            text             NOT NULL,
    baseline_scope      text             NOT NULL,
    canary_scope        text             NOT NULL,
    dry_run             boolean          NOT NULL,
    start_at_ms         bigint,
    state               text             NOT NULL CHECK (state IN ('pending', 'running',
                            'paused', 'promoted', 'rolled_back', 'awaiting_review',
                            'rollback_failed', 'failed')),
    current_stage       bigint           CHECK (current_stage >= 0),
    traffic             double precision,
    latest_verdict      text,
    reasons             text[]           NOT NULL DEFAULT '{}',
    runner_state        jsonb            NOT NULL DEFAULT 'null',
    next_look_at_ms     bigint,
    version             bigint           NOT NULL CHECK (version >= 1),
    lease_owner         text,
    lease_expires_at_ms bigint,
    created_at_ms       bigint           NOT NULL,
    updated_at_ms       bigint           NOT NULL,
    CHECK ((lease_owner IS NULL) = (lease_expires_at_ms IS NULL))
);

-- claim_due: the claimable analyses, never-looked (NULL) first, then by due time.
CREATE INDEX analyses_due ON analyses (next_look_at_ms NULLS FIRST, seq)
    WHERE state IN ('pending', 'running');
-- list_analyses with a state filter.
CREATE INDEX analyses_state ON analyses (state, seq);

CREATE TABLE looks (
    analysis_id uuid    NOT NULL REFERENCES analyses (id) ON DELETE CASCADE,
    look        bigint  NOT NULL CHECK (look >= 0),
    at_ms       bigint  NOT NULL,
    stage_index bigint  NOT NULL CHECK (stage_index >= 0),
    verdict     text    NOT NULL,
    decision    text    NOT NULL,
    body        jsonb   NOT NULL,
    PRIMARY KEY (analysis_id, look)
);

CREATE TABLE actuations (
    seq             bigint           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key text             NOT NULL UNIQUE,
    analysis_id     uuid             NOT NULL REFERENCES analyses (id) ON DELETE CASCADE,
    action          text             NOT NULL,
    target          double precision NOT NULL,
    state           text             NOT NULL CHECK (state IN ('intended', 'applied', 'failed')),
    detail          text,
    at_ms           bigint           NOT NULL,
    completed_at_ms bigint
);
CREATE INDEX actuations_analysis ON actuations (analysis_id, seq);

CREATE TABLE audit_log (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    analysis_id uuid   NOT NULL REFERENCES analyses (id) ON DELETE CASCADE,
    actor       text   NOT NULL,
    action      text   NOT NULL CHECK (action IN ('pause', 'resume', 'promote', 'rollback')),
    reason      text   NOT NULL,
    from_state  text   NOT NULL,
    to_state    text   NOT NULL,
    at_ms       bigint NOT NULL
);
CREATE INDEX audit_log_analysis ON audit_log (analysis_id, seq);
