-- Enrichment with a static table; events without a match count under 'unknown'.
CREATE VIEW by_author AS
SELECT COALESCE(a.author, 'unknown') AS author, COUNT(*) AS views, COUNT(DISTINCT pv.user_id) AS readers
FROM page_view pv LEFT JOIN articles a ON pv.article_id = a.id
GROUP BY COALESCE(a.author, 'unknown'), TUMBLE(received_at, INTERVAL '5' MINUTE)
