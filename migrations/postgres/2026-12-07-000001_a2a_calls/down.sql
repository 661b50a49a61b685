DROP TABLE a2a_calls;
