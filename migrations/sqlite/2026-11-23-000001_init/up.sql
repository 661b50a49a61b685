-- AgentHub initial schema.
--
-- This file is byte-identical in migrations/sqlite and migrations/postgres: it uses only
-- types both backends understand the same way (TEXT, INTEGER, BIGINT, BOOLEAN), so one
-- hand-written hub/src/schema.rs serves both. Ids are UUIDv7 strings, timestamps are
-- unix milliseconds (BIGINT), JSON documents are TEXT. Every column is spelled NOT NULL
-- or left nullable on purpose; on SQLite a TEXT PRIMARY KEY is NOT NULL only if it says so.
-- Closed value sets (members.role, approvals.decision, events.audience_kind, the status
-- columns) are enforced by the domain enums, not CHECK constraints: SQLite cannot alter a
-- CHECK without rebuilding the table, so a new value would cost a table copy.

CREATE TABLE workspaces (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE members (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (workspace_id, email)
);

CREATE TABLE api_keys (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    member_id TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    token_prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT,
    expires_at BIGINT
);
CREATE INDEX idx_api_keys_member ON api_keys (member_id);

CREATE TABLE agents (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    owner_member_id TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    capabilities TEXT NOT NULL,
    max_concurrency INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'idle',
    last_seen_at BIGINT,
    auto_approve BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    UNIQUE (workspace_id, name)
);
CREATE INDEX idx_agents_owner ON agents (owner_member_id);

CREATE TABLE agent_tokens (
    id TEXT NOT NULL PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    token_prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX idx_agent_tokens_agent ON agent_tokens (agent_id);

CREATE TABLE tasks (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    creator_member_id TEXT,
    creator_agent_id TEXT,
    due_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_tasks_workspace_status ON tasks (workspace_id, status);

CREATE TABLE steps (
    id TEXT NOT NULL PRIMARY KEY,
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    "key" TEXT NOT NULL,
    position INTEGER NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    approval_level INTEGER NOT NULL,
    executor TEXT,
    input TEXT NOT NULL,
    expected_inputs TEXT,
    expected_outputs TEXT,
    required_capabilities TEXT NOT NULL,
    result TEXT,
    summary TEXT,
    self_check TEXT,
    files TEXT NOT NULL DEFAULT '[]',
    claimed_by TEXT,
    lease_until BIGINT,
    attempt INTEGER NOT NULL,
    rework_comment TEXT,
    started_at BIGINT,
    completed_at BIGINT,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (task_id, "key")
);
CREATE INDEX idx_steps_status_lease ON steps (status, lease_until);

CREATE TABLE step_assignees (
    step_id TEXT NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    PRIMARY KEY (step_id, agent_id)
);
CREATE INDEX idx_step_assignees_agent ON step_assignees (agent_id);

CREATE TABLE step_approvers (
    step_id TEXT NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    member_id TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    PRIMARY KEY (step_id, member_id)
);
CREATE INDEX idx_step_approvers_member ON step_approvers (member_id);

CREATE TABLE step_dependencies (
    step_id TEXT NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    depends_on TEXT NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    PRIMARY KEY (step_id, depends_on)
);
CREATE INDEX idx_step_dependencies_depends_on ON step_dependencies (depends_on);

-- One row per (step, attempt): a repeated submit of the same attempt finds this row and
-- answers with the stored outcome instead of applying the submit twice.
CREATE TABLE step_submissions (
    step_id TEXT NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    result TEXT NOT NULL,
    summary TEXT,
    self_check TEXT,
    files TEXT NOT NULL,
    outcome TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (step_id, attempt)
);

CREATE TABLE approvals (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    step_id TEXT NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    approver_member_id TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    decision TEXT,
    comment TEXT,
    decided_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (step_id, attempt, approver_member_id)
);
CREATE INDEX idx_approvals_approver ON approvals (approver_member_id);

CREATE TABLE input_requests (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    step_id TEXT NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    question TEXT NOT NULL,
    options TEXT NOT NULL,
    answer TEXT,
    answered_by TEXT,
    answered_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_input_requests_step ON input_requests (step_id);
CREATE INDEX idx_input_requests_member ON input_requests (member_id);

CREATE TABLE availability_requests (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    task_id TEXT,
    agent_id TEXT NOT NULL,
    asked_by_member_id TEXT NOT NULL,
    question TEXT NOT NULL,
    available BOOLEAN,
    note TEXT,
    responded_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_availability_requests_agent ON availability_requests (agent_id);

CREATE TABLE workflow_changes (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    step_id TEXT,
    before_json TEXT,
    after_json TEXT,
    reason TEXT NOT NULL,
    triggered_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_workflow_changes_task ON workflow_changes (task_id);

-- The durable outbox: one row per audience (agent or member) per event, with a gap-free
-- per-audience seq taken from audience_seqs in the same transaction.
CREATE TABLE events (
    audience_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    workspace_id TEXT NOT NULL,
    audience_kind TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (audience_id, seq)
);

CREATE TABLE audience_seqs (
    audience_id TEXT NOT NULL PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

CREATE TABLE step_logs (
    id TEXT NOT NULL PRIMARY KEY,
    step_id TEXT NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    stream TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_step_logs_step ON step_logs (step_id, attempt);

CREATE TABLE files (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_files_workspace ON files (workspace_id);

CREATE TABLE usage (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_usage_workspace ON usage (workspace_id, created_at);
CREATE INDEX idx_usage_step ON usage (step_id);
