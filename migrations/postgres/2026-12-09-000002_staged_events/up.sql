-- A busy workspace's feed and its members' feeds are numbered after the commit of the
-- change that wrote their events (`events::staged`): the change writes each such event
-- with a placeholder seq, the negative of a number from this sequence, and a numberer
-- gives the committed ones their gap-free seqs in one short transaction, so that no
-- change holds the feed's counter row through its commit. Readers ask for `seq > n`
-- with n >= 0 and never see a placeholder.
CREATE SEQUENCE staged_event_ids;
-- The placeholders waiting for their numbers (the numberer's sweep finds their feeds).
CREATE INDEX idx_events_staged ON events (audience_id, seq) WHERE seq < 0;
-- Notifications made from a member's staged event carry its placeholder until then.
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
