-- Every task ends: how it ended, per-step attempt limits and failure handling, the last
-- progress of a running step, and a timeline of every status change.
ALTER TABLE tasks ADD COLUMN outcome TEXT;

ALTER TABLE steps ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 3;
ALTER TABLE steps ADD COLUMN continue_on_failure BOOLEAN NOT NULL DEFAULT FALSE;
-- Retryable failures and lease expiries since the step was created or last retried.
ALTER TABLE steps ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
-- Why the step failed or was skipped.
ALTER TABLE steps ADD COLUMN status_reason TEXT;
-- For a step skipped because another step failed: that step's id.
ALTER TABLE steps ADD COLUMN skipped_because TEXT;
ALTER TABLE steps ADD COLUMN progress_percent INTEGER;
ALTER TABLE steps ADD COLUMN progress_message TEXT;

-- Every status change of a task and of its steps, with who made it and why.
CREATE TABLE timeline (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    step_id TEXT,
    from_status TEXT,
    to_status TEXT NOT NULL,
    reason TEXT,
    attempt INTEGER,
    actor_kind TEXT NOT NULL,
    actor_id TEXT,
    actor_name TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_timeline_task ON timeline (task_id, created_at);
