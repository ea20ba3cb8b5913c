-- One-shot judgements of a fixed window (Kayenta's canary executions): requested over
-- the API, run once by whichever instance's worker claims it, read back by id from any
-- instance. No flag is moved. `request` and `result` are JSON the engine owns.
CREATE TABLE executions (
    id                  uuid             PRIMARY KEY,
    -- Creation order.
    seq                 bigint           GENERATED ALWAYS AS IDENTITY UNIQUE,
    kind                text             NOT NULL,
    -- What the caller judges again and again (Flagger: namespace, canary, checksum).
    key                 text,
    profile_name        text             NOT NULL,
    profile_text        text             NOT NULL,
    source              text             NOT NULL,
    request             jsonb            NOT NULL,
    state               text             NOT NULL CHECK (state IN ('pending', 'running',
                            'succeeded', 'failed')),
    result              jsonb            NOT NULL DEFAULT 'null',
    error               text,
    attempts            bigint           NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    due_at_ms           bigint           NOT NULL,
    lease_owner         text,
    lease_expires_at_ms bigint,
    created_at_ms       bigint           NOT NULL,
    updated_at_ms       bigint           NOT NULL,
    finished_at_ms      bigint,
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
