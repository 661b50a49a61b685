CREATE INDEX idx_events_staged ON events (audience_id, seq) WHERE seq < 0;
