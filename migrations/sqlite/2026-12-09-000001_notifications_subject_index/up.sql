-- The open items about a subject (an approval, a question, a plan, an agent): only items
-- that have one. Every `info` item without a subject (a creator's `task.completed`, ...)
-- stayed in this index until read, and PostgreSQL's plan for the open action items of a
-- change's tasks (kept per connection, made while the table was empty) walked the whole
-- index on every change: thousands of rows per step once a creator had thousands of
-- unread items. Without them that plan cannot use this index.
DROP INDEX idx_notifications_subject;
CREATE INDEX idx_notifications_subject ON notifications (subject_id)
    WHERE resolved_at IS NULL AND subject_id IS NOT NULL;
