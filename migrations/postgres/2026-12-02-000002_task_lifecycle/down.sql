DROP TABLE timeline;
ALTER TABLE steps DROP COLUMN progress_message;
ALTER TABLE steps DROP COLUMN progress_percent;
ALTER TABLE steps DROP COLUMN skipped_because;
ALTER TABLE steps DROP COLUMN status_reason;
ALTER TABLE steps DROP COLUMN failures;
ALTER TABLE steps DROP COLUMN continue_on_failure;
ALTER TABLE steps DROP COLUMN max_attempts;
ALTER TABLE tasks DROP COLUMN outcome;
