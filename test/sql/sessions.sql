-- Reading sessions per user: a gap of a minute ends a session.
CREATE VIEW sessions AS
SELECT user_id, COUNT(*) AS views, MAX(read_ms) AS longest_ms
FROM page_view
GROUP BY user_id, SESSION(received_at, INTERVAL '1' MINUTE)
