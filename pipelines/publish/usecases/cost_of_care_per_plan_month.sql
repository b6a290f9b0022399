-- name: cost_of_care_per_plan_month
-- version: 1
-- audience: product owner (BI on the cost of care)
-- Claimed amounts of each fitness plan's members, by plan and month of service. A patient in two
-- plans counts in both: the question is what each plan's population costs.
SELECT
    p.code AS plan_code,
    p.name AS plan_name,
    CAST(date_trunc('month', CAST(c.service_date AS DATE)) AS DATE) AS service_month,
    count(*) AS claims,
    sum(c.amount) AS claimed_amount
FROM aurora_mysql.health__insurance_claims AS c
JOIN aurora_mysql.health__plan_enrollments AS e ON e.patient_id = c.patient_id
JOIN aurora_mysql.health__fitness_plans AS p ON p.plan_id = e.plan_id
GROUP BY p.code, p.name, date_trunc('month', CAST(c.service_date AS DATE))
ORDER BY plan_code, service_month
