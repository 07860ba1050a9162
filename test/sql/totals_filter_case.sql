-- Running totals (no window) with CASE, IN, LIKE, COALESCE and TOP_K.
CREATE VIEW totals AS
SELECT CASE WHEN read_ms >= 5000 THEN 'long' WHEN read_ms BETWEEN 1000 AND 4999 THEN 'medium' ELSE 'short' END AS band,
       COUNT(*) AS n, TOP_K(article_id, 2) AS top_articles, MAX(COALESCE(referrer, 'none')) AS last_referrer
FROM page_view
WHERE section IN ('news', 'sport') AND referrer NOT LIKE '%t.co%'
GROUP BY CASE WHEN read_ms >= 5000 THEN 'long' WHEN read_ms BETWEEN 1000 AND 4999 THEN 'medium' ELSE 'short' END
