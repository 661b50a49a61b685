DROP TABLE staged_floors;
DROP INDEX idx_notifications_staged;
DROP INDEX idx_events_staged;
DROP SEQUENCE staged_event_ids;
