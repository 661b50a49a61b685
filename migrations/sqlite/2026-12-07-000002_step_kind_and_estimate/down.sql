ALTER TABLE steps DROP COLUMN estimate_minutes;
ALTER TABLE steps DROP COLUMN kind;
