-- A caller-chosen key that names one analysis for good, so that a controller which
-- can only repeat the same request (Argo Rollouts' `web` provider: namespace, rollout
-- and pod-template hash) starts the analysis on its first call and reads it on every
-- later one. A unique index decides between concurrent first calls.
ALTER TABLE analyses ADD COLUMN submit_key TEXT;
CREATE UNIQUE INDEX analyses_submit_key ON analyses (submit_key);
