-- Signed webhooks: each one follows its workspace's feed (outbox audience
-- `workspace:<workspace id>`) with a cursor of its own.

CREATE TABLE webhooks (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    -- The signing secret (`whsec_…`), kept as it is: signing needs it.
    secret TEXT NOT NULL,
    -- JSON array of event types; empty: every type.
    event_types TEXT NOT NULL,
    -- Only the events of this task (NULL: every task).
    task_id TEXT,
    description TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    disabled_reason TEXT,
    -- The last seq of the workspace feed handled (delivered or skipped by the filters).
    cursor_seq BIGINT NOT NULL,
    -- The hub process delivering this webhook, until lease_until (unix ms).
    lease_owner TEXT,
    lease_until BIGINT,
    created_by TEXT REFERENCES members (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX idx_webhooks_workspace ON webhooks (workspace_id);

-- One row per (webhook, event) of the ordered stream, and per ping or redelivery. The
-- id is the `AgentHub-Delivery` header, the same on every attempt.
CREATE TABLE webhook_deliveries (
    id TEXT NOT NULL PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    -- event, ping or redeliver.
    kind TEXT NOT NULL,
    -- The event's seq in the workspace feed (0 for a ping).
    seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    -- The body sent, exactly.
    payload TEXT NOT NULL,
    -- pending, delivered or failed.
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at BIGINT,
    first_attempt_at BIGINT,
    last_attempt_at BIGINT,
    delivered_at BIGINT,
    -- For a redelivery: the delivery it repeats.
    redelivery_of TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX idx_webhook_deliveries_event ON webhook_deliveries (webhook_id, seq) WHERE kind = 'event';
CREATE INDEX idx_webhook_deliveries_webhook ON webhook_deliveries (webhook_id, created_at);

-- Every try of a delivery.
CREATE TABLE webhook_attempts (
    id TEXT NOT NULL PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at BIGINT NOT NULL,
    -- The answer's status code (NULL: no answer: a timeout, a refused or failed connection).
    status_code INTEGER,
    latency_ms BIGINT NOT NULL,
    error TEXT,
    -- The first bytes of the answer's body.
    response_excerpt TEXT
);
CREATE INDEX idx_webhook_attempts_delivery ON webhook_attempts (delivery_id);
