-- The notification inbox: what asks something of a member (an approval, a question, an
-- availability request: priority `action`) or tells them something they should know (a
-- task of theirs ended, an agent of theirs went offline holding work: `info`). Written in
-- the transaction of the change that caused it; an action item is resolved once it no
-- longer waits on the member.
CREATE TABLE notifications (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    member_id TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    -- `approval.requested`, `input.requested`, `availability.requested`, `task.completed`,
    -- `task.failed`, `task.cancelled`, `agent.offline`, or a kind another module notifies.
    kind TEXT NOT NULL,
    -- `action` or `info`.
    priority TEXT NOT NULL,
    task_id TEXT,
    step_id TEXT,
    -- The approval, input request, availability request or agent the item is about.
    subject_id TEXT,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    -- JSON object: what a client needs to act (attempt and digest, options, ...).
    data TEXT NOT NULL,
    -- The seq of the member's event it was made from (NULL: none).
    event_seq BIGINT,
    created_at BIGINT NOT NULL,
    read_at BIGINT,
    resolved_at BIGINT
);
CREATE INDEX idx_notifications_member ON notifications (member_id, id);
CREATE INDEX idx_notifications_waiting ON notifications (task_id) WHERE resolved_at IS NULL AND priority = 'action';
CREATE INDEX idx_notifications_subject ON notifications (subject_id) WHERE resolved_at IS NULL;
CREATE INDEX idx_notifications_read ON notifications (read_at) WHERE read_at IS NOT NULL;
