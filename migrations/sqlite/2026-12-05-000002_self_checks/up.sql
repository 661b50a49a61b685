-- An agent's check of a submitted result: whether it fits the step and the task.
CREATE TABLE step_checks (
    step_id TEXT NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    workspace_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    fits BOOLEAN NOT NULL,
    -- JSON list of strings.
    reasons TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (step_id, attempt)
);

-- A workflow change a check suggests, waiting for the task's creator.
CREATE TABLE workflow_approvals (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    -- The step whose check suggested it, its attempt and agent.
    step_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    approver_member_id TEXT NOT NULL,
    -- JSON: the suggestion (op, step, new_step, assignees, reason).
    suggestion TEXT NOT NULL,
    -- pending, approved, rejected
    status TEXT NOT NULL,
    comment TEXT,
    decided_by TEXT,
    decided_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_workflow_approvals_task ON workflow_approvals (task_id);
