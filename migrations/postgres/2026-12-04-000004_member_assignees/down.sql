DROP INDEX idx_step_assignees_via_member;
ALTER TABLE step_assignees DROP COLUMN via_member_id;
