-- name: marketing_campaign_audience
-- version: 1
-- audience: sales and marketing
-- A running-shoe campaign: opted-in patients who can be contacted, whose preferences name the
-- 5k goal, and who logged steps in their last 7 days of device data — with their channel.
WITH latest AS (
    SELECT max(CAST(event_time AS TIMESTAMP)) AS at FROM devices.dynamodb__device_events
),
active AS (
    SELECT CAST(d.patient_id AS BIGINT) AS patient_id, sum(d.steps) AS steps_last_week
    FROM devices.dynamodb__device_events AS d
    CROSS JOIN latest
    WHERE d.type = 'steps' AND CAST(d.event_time AS TIMESTAMP) > latest.at - INTERVAL '7' DAY
    GROUP BY CAST(d.patient_id AS BIGINT)
    HAVING sum(d.steps) > 0
)
SELECT
    CAST(pt.patient_id AS BIGINT) AS patient_id,
    pt.given_name,
    pt.email,
    pt.phone,
    hp.contact_channel,
    hp.language,
    a.steps_last_week
FROM aurora_mysql.health__patients AS pt
JOIN aurora_mysql.health__health_preferences AS hp ON hp.patient_id = pt.patient_id
JOIN active AS a ON a.patient_id = CAST(pt.patient_id AS BIGINT)
WHERE pt.marketing_opt_in
  AND hp.contact_channel <> 'none'
  AND strpos(hp.preferences, '"run_5k"') > 0
ORDER BY patient_id
