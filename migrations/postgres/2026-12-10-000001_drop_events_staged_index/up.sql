-- A numbering round reads a feed's placeholders as a range of the primary key
-- (audience_id, seq), below the floor's negative: the partial index of placeholders
-- served nothing the key does not, and cost an index entry per staged event.
DROP INDEX idx_events_staged;
