-- A task in planning: each round asks one agent for a plan and holds its proposal until
-- the task's creator accepts it or asks again (a new round).
CREATE TABLE plans (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    round INTEGER NOT NULL,
    -- requested, proposed, accepted, replaced
    status TEXT NOT NULL,
    planner_agent_id TEXT NOT NULL,
    -- What the creator said when asking again.
    comment TEXT,
    -- JSON list of plan steps the planner starts from.
    start_steps TEXT NOT NULL,
    -- JSON list of the proposed plan steps.
    steps TEXT,
    note TEXT,
    created_at BIGINT NOT NULL,
    proposed_at BIGINT,
    decided_at BIGINT
);
CREATE INDEX idx_plans_task ON plans (task_id, round);
