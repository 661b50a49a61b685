-- A step assigned to a member (`member:<email>`): each agent bound to the member is an
-- assignee, its row marked with the member, so that the member's agents added later join
-- the step's open assignments and any of the member's machines may take it.
ALTER TABLE step_assignees ADD COLUMN via_member_id TEXT;
CREATE INDEX idx_step_assignees_via_member ON step_assignees (via_member_id)
    WHERE via_member_id IS NOT NULL;
