-- The steps an agent holds: every claim counts them against its max concurrency. Only
-- held steps are indexed (a finished step keeps its claimed_by).
CREATE INDEX idx_steps_held_by ON steps (claimed_by) WHERE status IN ('claimed', 'running', 'blocked');
