-- One owner per flag: at most one active analysis per (actuator target, flag), across
-- every instance sharing this database. A unique index, not a check-then-insert, so two
-- submissions racing on two instances cannot both win.
--
-- `owner` is the actuator's target as the submitting server resolved it from its
-- settings (`flagd-file:/abs/path`, `unleash:URL,project,environment`, `webhook:URL`,
-- `log-only:NAME`), so two actuator names for one flag file are one owner. Dry runs
-- never move the flag and own nothing (NULL). Rows from before this migration get
-- `actuator:NAME`: SQL cannot read settings.
--
-- The owning states are those in which the analysis may still move the flag: pending
-- and running (it will), paused and awaiting_review (the flag sits at a partial share
-- and a resume or a manual action moves it again), rollback_failed (the kill switch is
-- retried until it is pulled). promoted, rolled_back and failed release the flag.
ALTER TABLE analyses ADD COLUMN owner text;
ALTER TABLE analyses ADD COLUMN adopt boolean NOT NULL DEFAULT false;

UPDATE analyses SET owner = 'actuator:' || actuator WHERE NOT dry_run;

-- Duplicates already in the store (two active analyses driving one flag, issue 13) must
-- neither fail this migration nor lose data. One keeps the flag: a rollback_failed one
-- first (a kill switch still being retried must not stop), then running, awaiting
-- review, paused, pending; the oldest among equals. The others end `failed` with a
-- reason naming the one kept; their rows, looks and flag changes stay, and their flag
-- is not touched.
WITH ranked AS (
    SELECT id, owner, flag,
           first_value(id) OVER w AS keeper,
           row_number() OVER w AS rank
    FROM analyses
    WHERE owner IS NOT NULL
      AND state IN ('pending', 'running', 'paused', 'awaiting_review', 'rollback_failed')
    WINDOW w AS (PARTITION BY owner, flag ORDER BY
        CASE state WHEN 'rollback_failed' THEN 0 WHEN 'running' THEN 1
                   WHEN 'awaiting_review' THEN 2 WHEN 'paused' THEN 3 ELSE 4 END, seq)
)
UPDATE analyses AS a
SET state = 'failed',
    reasons = array_prepend('superseded when one owner per flag was enforced (migration 0004): analysis '
        || ranked.keeper::text || ' kept flag ' || a.flag || '; this one was stopped without touching the flag',
        a.reasons),
    lease_owner = NULL,
    lease_expires_at_ms = NULL,
    requested_action = NULL,
    version = a.version + 1
FROM ranked
WHERE a.id = ranked.id AND ranked.rank > 1;

CREATE UNIQUE INDEX analyses_one_owner_per_flag ON analyses (owner, flag)
    WHERE owner IS NOT NULL
      AND state IN ('pending', 'running', 'paused', 'awaiting_review', 'rollback_failed');
