-- Roles on every action and self-service accounts: what an API key may do (a JSON array
-- of `read`, `write`, `admin`; keys made before this migration keep all three), and the
-- agent tokens that stopped authenticating because their member was removed (their rows
-- go with the member), so that every hub closes their live sessions.
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '["read","write","admin"]';

CREATE TABLE revoked_agent_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX idx_revoked_agent_tokens_at ON revoked_agent_tokens (revoked_at);
