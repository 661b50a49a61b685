DROP INDEX idx_steps_a2a;
