-- Steps the hub delegates to outside A2A agents (`"executor": "a2a"`): one row per
-- attempt, with the remote task it follows, so a restarted hub (or another one) goes
-- on following it. A hub follows a call while it holds `follower` until `follow_until`.
CREATE TABLE a2a_calls (
    step_id TEXT NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    -- The assignee the step was claimed for; its member is asked the remote's questions.
    agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    agent_card_url TEXT NOT NULL,
    -- The JSON-RPC URL named by the card, once fetched.
    endpoint TEXT,
    remote_task_id TEXT,
    -- The question open for the remote's input-required status, until its answer is sent.
    input_request_id TEXT,
    -- The input-required status (its message id or timestamp) last answered.
    answered_status TEXT,
    follower TEXT,
    follow_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (step_id, attempt)
);
CREATE INDEX idx_a2a_calls_open ON a2a_calls (finished_at, follow_until);
