-- Looks are kept compactly: `body_zlib` holds the body deflated (`store::look_body`) and
-- `body` the JSON `null` for such rows. Looks written before keep their JSON in `body`
-- and are read as they are. (Adding a nullable column rewrites nothing.)
ALTER TABLE looks ADD COLUMN body_zlib bytea;
-- Retention: the pruning task finds the finished analyses by the time they last changed.
CREATE INDEX analyses_finished ON analyses (updated_at_ms)
    WHERE state IN ('promoted', 'rolled_back', 'failed');
