-- PostgreSQL numbers a workspace's feed and its members' feeds after the commit of the
-- change that wrote their events, from placeholder (negative) seqs; SQLite's single
-- writer numbers every event in the change's own transaction and never writes one. The
-- indexes exist here too so both schemas stay alike; they stay empty.
CREATE INDEX idx_events_staged ON events (audience_id, seq) WHERE seq < 0;
CREATE INDEX idx_notifications_staged ON notifications (member_id, event_seq) WHERE event_seq < 0;
