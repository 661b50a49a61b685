-- Decisions bound to what was seen, and deadlines for approvals and questions.

-- How long an approval or a question of a new step waits by default (NULL: no deadline).
ALTER TABLE workspaces ADD COLUMN decision_timeout_ms BIGINT DEFAULT 86400000;

-- The digest of the current attempt's result (`sha256:` + hex), computed on submit.
ALTER TABLE steps ADD COLUMN result_digest TEXT;
-- How long the step's approvals and questions wait (NULL: no deadline).
ALTER TABLE steps ADD COLUMN decision_timeout_ms BIGINT;
-- What the hub does when nobody decided in time: reject, escalate or fail.
ALTER TABLE steps ADD COLUMN on_timeout TEXT NOT NULL DEFAULT 'escalate';

-- When the approval times out (NULL: never, or already escalated).
ALTER TABLE approvals ADD COLUMN due_at BIGINT;
-- Added when the listed approvers did not decide in time (an owner or admin).
ALTER TABLE approvals ADD COLUMN escalated BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX idx_approvals_due ON approvals (due_at) WHERE decision IS NULL AND due_at IS NOT NULL;

-- When the question times out (NULL: never, or already escalated).
ALTER TABLE input_requests ADD COLUMN due_at BIGINT;
-- When owners and admins were asked too.
ALTER TABLE input_requests ADD COLUMN escalated_at BIGINT;
-- When the question closed unanswered.
ALTER TABLE input_requests ADD COLUMN expired_at BIGINT;
CREATE INDEX idx_input_requests_due ON input_requests (due_at) WHERE answer IS NULL AND due_at IS NOT NULL;
