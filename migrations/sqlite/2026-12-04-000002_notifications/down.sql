DROP INDEX idx_notifications_read;
DROP INDEX idx_notifications_subject;
DROP INDEX idx_notifications_waiting;
DROP INDEX idx_notifications_member;
DROP TABLE notifications;
