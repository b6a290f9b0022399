-- name: coach_patients_off_plan
-- version: 2
-- audience: health coach
-- Patients in an active plan whose last week (the 7 days up to the newest daily summary) fell
-- short of the plan's daily steps or sleep target, with how to reach them. Daily totals come from
-- the devices' daily summaries (device events are individual readings, not whole days). A day
-- without a summary counts as zero: a silent patient is off plan too.
WITH latest AS (
    SELECT max(CAST(day AS DATE)) AS day FROM devices.dynamodb__daily_summary
),
last_week AS (
    SELECT
        CAST(s.patient_id AS BIGINT) AS patient_id,
        sum(coalesce(s.steps, 0)) / 7.0 AS steps_per_day,
        sum(coalesce(s.sleep_minutes, 0)) / 7.0 AS sleep_minutes_per_day
    FROM devices.dynamodb__daily_summary AS s
    CROSS JOIN latest
    WHERE CAST(s.day AS DATE) > latest.day - INTERVAL '7' DAY
    GROUP BY CAST(s.patient_id AS BIGINT)
)
SELECT
    CAST(pt.patient_id AS BIGINT) AS patient_id,
    pt.given_name,
    pt.family_name,
    pt.email,
    pt.phone,
    fp.code AS plan_code,
    fp.target_daily_steps,
    fp.target_sleep_minutes,
    round(coalesce(w.steps_per_day, 0), 1) AS steps_per_day,
    round(coalesce(w.sleep_minutes_per_day, 0), 1) AS sleep_minutes_per_day
FROM aurora_mysql.health__plan_enrollments AS e
JOIN aurora_mysql.health__fitness_plans AS fp ON fp.plan_id = e.plan_id
JOIN aurora_mysql.health__patients AS pt ON pt.patient_id = e.patient_id
LEFT JOIN last_week AS w ON w.patient_id = CAST(e.patient_id AS BIGINT)
WHERE e.status = 'active'
  AND (coalesce(w.steps_per_day, 0) < fp.target_daily_steps
       OR coalesce(w.sleep_minutes_per_day, 0) < fp.target_sleep_minutes)
ORDER BY patient_id, plan_code
