-- Unique readers per article over 5 minutes, sliding every minute; only articles with more than one view.
CREATE VIEW readers_hop AS
SELECT article_id, COUNT(*) AS views, COUNT(DISTINCT user_id) AS exact_readers,
       APPROX_COUNT_DISTINCT(user_id) AS readers, APPROX_PERCENTILE(read_ms, 0.5) AS median_ms
FROM page_view
WHERE section <> 'test'
GROUP BY article_id, HOP(received_at, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)
HAVING COUNT(*) > 1
