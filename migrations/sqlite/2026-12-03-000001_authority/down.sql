DROP TABLE revoked_agent_tokens;
ALTER TABLE api_keys DROP COLUMN scopes;
