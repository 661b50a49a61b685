-- A meeting step: who meets, for how long, within which window, and where the
-- coordination stands.
CREATE TABLE meetings (
    step_id TEXT NOT NULL PRIMARY KEY REFERENCES steps (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    duration_minutes INTEGER NOT NULL,
    -- The candidate window, in ms since the epoch (UTC).
    window_from BIGINT NOT NULL,
    window_to BIGINT NOT NULL,
    -- waiting (not ready yet), collecting, proposed, no_fit, scheduled
    status TEXT NOT NULL,
    -- The proposed (then scheduled) slot.
    slot_from BIGINT,
    slot_to BIGINT,
    -- The invitation attached to the step.
    file_id TEXT,
    confirmed_by TEXT,
    updated_at BIGINT NOT NULL
);

-- One participant of a meeting and their free intervals. The id is the request id an
-- agent answers in `availability.respond`.
CREATE TABLE meeting_participants (
    id TEXT NOT NULL PRIMARY KEY,
    step_id TEXT NOT NULL REFERENCES meetings (step_id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    email TEXT NOT NULL,
    name TEXT,
    -- The workspace member, when the participant is one.
    member_id TEXT,
    -- The agent asked for the member's availability (NULL: the member is asked in the
    -- inbox, or the task's creator answers for a person outside the workspace).
    agent_id TEXT,
    -- JSON list of {"from", "to"} RFC 3339 timestamps with the offsets given.
    intervals TEXT,
    responded_at BIGINT
);
CREATE INDEX idx_meeting_participants_step ON meeting_participants (step_id);
