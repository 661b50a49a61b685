DROP INDEX idx_steps_held_by;
