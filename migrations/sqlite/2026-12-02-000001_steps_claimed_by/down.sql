DROP INDEX idx_steps_claimed_by;
