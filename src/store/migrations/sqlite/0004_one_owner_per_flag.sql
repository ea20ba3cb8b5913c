-- One owner per flag: at most one active analysis per (actuator target, flag). A
-- unique index, not a check-then-insert. See the PostgreSQL migration of the same
-- number for what `owner` holds and why these states own a flag.
ALTER TABLE analyses ADD COLUMN owner TEXT;
ALTER TABLE analyses ADD COLUMN adopt INTEGER NOT NULL DEFAULT 0 CHECK (adopt IN (0, 1));

UPDATE analyses SET owner = 'actuator:' || actuator WHERE dry_run = 0;

-- Duplicates already in the store: one keeps the flag (rollback_failed first, then
-- running, awaiting_review, paused, pending; the oldest among equals), the others end
-- `failed` with a reason naming it. Nothing is deleted and no flag is touched.
CREATE TEMPORARY TABLE owner_ranked AS
    SELECT id, flag,
           first_value(id) OVER w AS keeper,
           row_number() OVER w AS rank
    FROM analyses
    WHERE owner IS NOT NULL
      AND state IN ('pending', 'running', 'paused', 'awaiting_review', 'rollback_failed')
    WINDOW w AS (PARTITION BY owner, flag ORDER BY
        CASE state WHEN 'rollback_failed' THEN 0 WHEN 'running' THEN 1
                   WHEN 'awaiting_review' THEN 2 WHEN 'paused' THEN 3 ELSE 4 END, seq);

UPDATE analyses
SET state = 'failed',
    reasons = (
        SELECT json_group_array(value) FROM (
            SELECT 0 AS position, 'superseded when one owner per flag was enforced (migration 0004): analysis '
                || r.keeper || ' kept flag ' || r.flag
                || '; this one was stopped without touching the flag' AS value
            FROM owner_ranked AS r WHERE r.id = analyses.id
            UNION ALL
            SELECT 1 + CAST(key AS INTEGER), value FROM json_each(analyses.reasons)
            ORDER BY position
        )
    ),
    lease_owner = NULL,
    lease_expires_at_ms = NULL,
    requested_action = NULL,
    version = version + 1
WHERE id IN (SELECT id FROM owner_ranked WHERE rank > 1);

DROP TABLE owner_ranked;

CREATE UNIQUE INDEX analyses_one_owner_per_flag ON analyses (owner, flag)
    WHERE owner IS NOT NULL
      AND state IN ('pending', 'running', 'paused', 'awaiting_review', 'rollback_failed');
