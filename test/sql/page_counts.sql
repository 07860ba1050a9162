-- Per article per minute: counts and numeric aggregates.
CREATE VIEW page_counts AS
SELECT article_id, COUNT(*) AS views, SUM(read_ms) AS total_ms, AVG(read_ms) AS avg_ms,
       MIN(read_ms) AS min_ms, MAX(read_ms) AS max_ms, COUNT(referrer) AS with_referrer
FROM page_view
GROUP BY article_id, TUMBLE(received_at, INTERVAL '1' MINUTE)
