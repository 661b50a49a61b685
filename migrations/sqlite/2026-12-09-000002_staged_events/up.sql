-- PostgreSQL numbers a workspace's feed and its members' feeds after the commit of the
-- change that wrote their events, from placeholder (negative) seqs; SQLite's single
-- writer numbers every event in the change's own transaction and never writes one. The
-- indexes exist here too so both schemas stay alike; they stay empty.
CREATE INDEX idx_events_staged ON events (audience_id, seq) WHERE seq < 0;
CREATE INDEX idx_notifications_staged ON notifications (member_id, event_seq) WHERE event_seq < 0;
-- How far each such feed is numbered: every placeholder id up to floor_id is numbered
-- or rolled back, so a numbering round reads only the placeholders above it (the rows it
-- numbered leave dead versions below it until a vacuum). mark_id, the last id taken when
-- mark_xmax was the next transaction id, becomes the floor once every transaction older
-- than mark_xmax has ended (a transaction takes its id before its placeholders).
CREATE TABLE staged_floors (
    audience_id TEXT NOT NULL PRIMARY KEY,
    floor_id BIGINT NOT NULL,
    mark_id BIGINT NOT NULL,
    mark_xmax BIGINT NOT NULL
);
