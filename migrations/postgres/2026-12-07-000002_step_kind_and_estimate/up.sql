-- What a step is: `task` (an agent claims and runs it) or `meeting` (the hub coordinates
-- its participants; never claimed). Read from the row on the hot paths.
ALTER TABLE steps ADD COLUMN kind TEXT NOT NULL DEFAULT 'task';
UPDATE steps SET kind = 'meeting' WHERE id IN (SELECT step_id FROM meetings);
-- A rough estimate, in minutes (from a plan, or given at create).
ALTER TABLE steps ADD COLUMN estimate_minutes INTEGER;
