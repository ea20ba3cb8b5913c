-- Manual promote and rollback change the flag, and only the scheduler calls actuators,
-- so the API leaves them here for a worker: `apply_manual_action` sets the request (and
-- makes the analysis due at once), the worker's next `record_look` clears it.
ALTER TABLE analyses ADD COLUMN requested_action TEXT
    CHECK (requested_action IN ('promote', 'rollback'));
