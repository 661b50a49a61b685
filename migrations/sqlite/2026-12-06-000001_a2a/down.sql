ALTER TABLE webhooks DROP COLUMN a2a_token;
DROP TABLE a2a_skills;
