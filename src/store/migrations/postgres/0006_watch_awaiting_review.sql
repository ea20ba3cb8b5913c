-- A rollout waiting for a person's decision still takes its looks, so a rollback
-- trigger or the judge can roll it back meanwhile: workers claim `awaiting_review`
-- analyses that have a next look (only a started rollout has one).
DROP INDEX analyses_due;
CREATE INDEX analyses_due ON analyses (next_look_at_ms, seq)
    WHERE state IN ('pending', 'running', 'rollback_failed', 'awaiting_review');
-- Analyses that were already waiting stopped looking when they began to wait: they are
-- due at once.
UPDATE analyses SET next_look_at_ms = updated_at_ms
    WHERE state = 'awaiting_review' AND next_look_at_ms IS NULL AND runner_state <> 'null'::jsonb;
