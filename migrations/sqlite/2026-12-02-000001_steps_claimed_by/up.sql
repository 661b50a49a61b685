-- Steps an agent holds: the claim's max-concurrency check counts them on every claim.
CREATE INDEX idx_steps_claimed_by ON steps (claimed_by) WHERE claimed_by IS NOT NULL;
