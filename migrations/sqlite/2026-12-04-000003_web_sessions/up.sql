-- Browser sign-in: one-time sign-in links and the sessions they open (one table, `kind`).
CREATE TABLE web_sessions (
    id TEXT NOT NULL PRIMARY KEY,
    -- `link` (a one-time sign-in link) or `session` (a signed-in browser).
    kind TEXT NOT NULL,
    -- SHA-256 of the link token or of the session cookie; the secret itself is never stored.
    token_hash TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    member_id TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    -- Sessions: the token every state-changing page request must carry.
    csrf_token TEXT,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT,
    -- Links: ~10 minutes after creation. Sessions: slides with use, up to a fixed maximum.
    expires_at BIGINT NOT NULL,
    -- Links: when the link was used; sessions: when they were signed out.
    revoked_at BIGINT
);
CREATE INDEX idx_web_sessions_member ON web_sessions (member_id);
