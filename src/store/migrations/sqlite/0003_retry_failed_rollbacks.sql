-- A rollback that could not be applied is tried again until it succeeds: workers claim
-- `rollback_failed` analyses as they claim pending and running ones.
DROP INDEX analyses_due;
CREATE INDEX analyses_due ON analyses (next_look_at_ms, seq)
    WHERE state IN ('pending', 'running', 'rollback_failed');
