-- name: care_patients_needing_attention
-- version: 2
-- audience: health practitioner
-- Patients whose average resting pulse over their last 7 days of device data (the 7 days up to the
-- newest daily summary) is at least 10% above their own baseline from the days before, and who
-- have a claim in the 90 days up to the newest claim: the combination that asks for a call.
-- Resting pulse is the devices' own daily figure (daily_summary), not individual readings.
WITH latest AS (
    SELECT max(CAST(day AS DATE)) AS day FROM devices.dynamodb__daily_summary
),
resting AS (
    SELECT
        CAST(s.patient_id AS BIGINT) AS patient_id,
        CAST(s.resting_pulse AS DOUBLE) AS bpm,
        CAST(s.day AS DATE) > latest.day - INTERVAL '7' DAY AS recent
    FROM devices.dynamodb__daily_summary AS s
    CROSS JOIN latest
    WHERE s.resting_pulse IS NOT NULL
),
pulse AS (
    SELECT
        patient_id,
        avg(CASE WHEN recent THEN bpm END) AS recent_bpm,
        avg(CASE WHEN NOT recent THEN bpm END) AS baseline_bpm
    FROM resting
    GROUP BY patient_id
),
recent_claims AS (
    SELECT CAST(c.patient_id AS BIGINT) AS patient_id, count(*) AS claims, sum(c.amount) AS amount
    FROM aurora_mysql.health__insurance_claims AS c
    WHERE CAST(c.service_date AS DATE) > (
        SELECT max(CAST(service_date AS DATE)) FROM aurora_mysql.health__insurance_claims
    ) - INTERVAL '90' DAY
    GROUP BY CAST(c.patient_id AS BIGINT)
)
SELECT
    p.patient_id,
    pt.given_name,
    pt.family_name,
    pt.phone,
    round(p.baseline_bpm, 1) AS baseline_bpm,
    round(p.recent_bpm, 1) AS recent_bpm,
    rc.claims AS recent_claims,
    rc.amount AS recent_claimed_amount
FROM pulse AS p
JOIN recent_claims AS rc ON rc.patient_id = p.patient_id
JOIN aurora_mysql.health__patients AS pt ON CAST(pt.patient_id AS BIGINT) = p.patient_id
WHERE p.recent_bpm >= 1.1 * p.baseline_bpm
ORDER BY p.recent_bpm / p.baseline_bpm DESC, p.patient_id
