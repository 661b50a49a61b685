DROP INDEX idx_notifications_subject;
CREATE INDEX idx_notifications_subject ON notifications (subject_id) WHERE resolved_at IS NULL;
