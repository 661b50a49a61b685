-- Agents their owners opted in to the A2A bridge: one skill each on the workspace's
-- Agent Card (its name, capabilities and these words).
CREATE TABLE a2a_skills (
    agent_id TEXT NOT NULL PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    description TEXT NOT NULL,
    -- JSON array of example requests.
    examples TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_a2a_skills_workspace ON a2a_skills (workspace_id);

-- A webhook with this token is an A2A push notification config of its task: its
-- deliveries are A2A `StreamResponse` bodies sent with `X-A2A-Notification-Token`.
ALTER TABLE webhooks ADD COLUMN a2a_token TEXT;
