DROP INDEX idx_web_sessions_member;
DROP TABLE web_sessions;
