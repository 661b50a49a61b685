-- The steps the hub runs itself (`"executor": "a2a"`), by status: the A2A worker looks
-- for the ready ones whenever workspace events flow (at most every 20 ms), and without
-- this index that look read every ready step of every task.
CREATE INDEX idx_steps_a2a ON steps (status, id) WHERE executor = 'a2a';
