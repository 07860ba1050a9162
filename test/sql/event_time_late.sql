-- Event-time windows with a 20 s lateness bound: events later than that are counted as late, not applied.
CREATE VIEW by_event_time WITH (max_lateness = '20s') AS
SELECT article_id, COUNT(*) AS views, COUNT(DISTINCT user_id) AS readers
FROM page_view
GROUP BY article_id, TUMBLE(event_time, INTERVAL '30' SECOND)
