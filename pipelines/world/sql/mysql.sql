-- The "health and wellness" world, Aurora MySQL side (MariaDB 10.11 and MySQL 9.7 locally: the
-- same statements run on both; MySQL 8+ only warns (1681) that the display width of TINYINT(1) is
-- deprecated, and keeps it as the boolean convention).
--
-- Conventions every reader of these tables relies on:
--   * DATETIME(6) columns hold UTC wall time. The application converts each event from the zone it
--     happened in (kept beside it where it matters, e.g. assessments.assessed_tz) before writing.
--   * TIMESTAMP(6) columns are instants; the world's writers use session time_zone '+00:00'.
--   * Every table has a primary key: CDC needs one to apply updates and deletes to the lake.
--   * Foreign keys never cascade. MySQL/MariaDB perform cascaded changes inside InnoDB and do not
--     write them to the binlog as row events, so a CDC reader would never see the child rows go.
--     The application deletes children explicitly, in the same transaction as the parent.
--   * Columns that point at the PostgreSQL "tenants" database (tenant_id, provider_id) cannot have
--     foreign keys; they may go stale, as cross-database references do in production.
-- Statements are separated by a line ending in ';' (the loader splits on that).

CREATE TABLE IF NOT EXISTS patients (
    patient_id        BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    tenant_id         VARCHAR(64)     NOT NULL COMMENT 'tenant_metadata.tenant_id in the tenants database',
    given_name        VARCHAR(100)    NOT NULL,
    family_name       VARCHAR(100)    NULL COMMENT 'NULL for people with a single name',
    email             VARCHAR(254)    NULL,
    phone             VARCHAR(32)     NULL COMMENT 'E.164',
    birth_date        DATE            NULL,
    sex               ENUM('female','male','intersex','unknown') NOT NULL DEFAULT 'unknown',
    city              VARCHAR(100)    NULL,
    country           CHAR(2)         NOT NULL COMMENT 'ISO 3166-1 alpha-2',
    time_zone         VARCHAR(64)     NOT NULL COMMENT 'IANA zone the patient lives in',
    height_cm         SMALLINT UNSIGNED NULL,
    wearable_serial   BIGINT UNSIGNED NULL COMMENT 'full 64-bit range, up to 18446744073709551615',
    marketing_opt_in  TINYINT(1)      NOT NULL DEFAULT 0,
    created_at        DATETIME(6)     NOT NULL COMMENT 'UTC wall time',
    updated_at        TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (patient_id),
    UNIQUE KEY uq_patients_email (email),
    KEY ix_patients_tenant (tenant_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT='Patient profiles';

CREATE TABLE IF NOT EXISTS fitness_plans (
    plan_id               INT UNSIGNED    NOT NULL AUTO_INCREMENT,
    code                  VARCHAR(32)     NOT NULL,
    name                  VARCHAR(120)    NOT NULL,
    description           TEXT            NULL,
    monthly_fee           DECIMAL(10,2)   NOT NULL,
    currency              CHAR(3)         NOT NULL DEFAULT 'USD',
    target_daily_steps    INT UNSIGNED    NOT NULL,
    target_sleep_minutes  SMALLINT UNSIGNED NOT NULL,
    intensity             ENUM('gentle','moderate','vigorous') NOT NULL,
    is_active             TINYINT(1)      NOT NULL DEFAULT 1,
    launched_on           DATE            NOT NULL,
    updated_at            TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (plan_id),
    UNIQUE KEY uq_fitness_plans_code (code)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT='Catalogue of fitness plans';

-- A patient joins a plan at most once; leaving and re-joining changes the status (composite key).
CREATE TABLE IF NOT EXISTS plan_enrollments (
    patient_id    BIGINT UNSIGNED NOT NULL,
    plan_id       INT UNSIGNED    NOT NULL,
    status        ENUM('active','paused','cancelled') NOT NULL DEFAULT 'active',
    enrolled_at   DATETIME(6)     NOT NULL COMMENT 'UTC wall time',
    ended_on      DATE            NULL,
    discount_pct  DECIMAL(5,2)    NULL,
    updated_at    TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (patient_id, plan_id),
    KEY ix_plan_enrollments_plan (plan_id),
    CONSTRAINT fk_plan_enrollments_patient FOREIGN KEY (patient_id) REFERENCES patients (patient_id),
    CONSTRAINT fk_plan_enrollments_plan FOREIGN KEY (plan_id) REFERENCES fitness_plans (plan_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT='Which patient follows which plan';

CREATE TABLE IF NOT EXISTS assessments (
    assessment_id       BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    patient_id          BIGINT UNSIGNED NOT NULL,
    assessed_at         DATETIME(6)     NOT NULL COMMENT 'UTC wall time',
    assessed_tz         VARCHAR(64)     NOT NULL COMMENT 'IANA zone of the clinic; local time = assessed_at in this zone',
    weight_kg           DECIMAL(5,1)    NULL,
    bmi                 DECIMAL(5,2)    NULL,
    systolic_mmhg       SMALLINT UNSIGNED NULL,
    diastolic_mmhg      SMALLINT UNSIGNED NULL,
    resting_heart_rate  TINYINT UNSIGNED NULL,
    vo2_max             DOUBLE          NULL,
    risk_score          DECIMAL(5,4)    NOT NULL COMMENT '0..1',
    risk_band           ENUM('low','moderate','high','critical') NOT NULL,
    notes               TEXT            NULL,
    PRIMARY KEY (assessment_id),
    KEY ix_assessments_patient (patient_id, assessed_at),
    CONSTRAINT fk_assessments_patient FOREIGN KEY (patient_id) REFERENCES patients (patient_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT='Clinical check-ups';

CREATE TABLE IF NOT EXISTS surveys (
    survey_id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    patient_id        BIGINT UNSIGNED NOT NULL,
    survey_type       ENUM('onboarding','quarterly','post_visit') NOT NULL,
    channel           SET('email','sms','app') NOT NULL DEFAULT '' COMMENT 'channels the survey was sent through',
    sent_at           DATETIME(6)     NOT NULL COMMENT 'UTC wall time',
    submitted_at      DATETIME(6)     NULL COMMENT 'UTC wall time; NULL while unanswered',
    nps               TINYINT         NULL COMMENT '0..10',
    duration_seconds  INT UNSIGNED    NULL,
    answers           JSON            NOT NULL,
    PRIMARY KEY (survey_id),
    KEY ix_surveys_patient (patient_id),
    CONSTRAINT fk_surveys_patient FOREIGN KEY (patient_id) REFERENCES patients (patient_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT='Satisfaction surveys';

CREATE TABLE IF NOT EXISTS health_preferences (
    patient_id         BIGINT UNSIGNED NOT NULL,
    preferences        JSON            NOT NULL,
    diet               ENUM('omnivore','vegetarian','vegan','pescatarian','halal','kosher','keto') NULL,
    language           VARCHAR(35)     NOT NULL COMMENT 'BCP 47 tag',
    contact_channel    ENUM('email','sms','app','phone','none') NOT NULL DEFAULT 'email',
    quiet_hours_start  TIME            NULL COMMENT 'local time in patients.time_zone',
    quiet_hours_end    TIME            NULL COMMENT 'local time in patients.time_zone',
    reminder_days      BIT(7)          NOT NULL DEFAULT b'1111100' COMMENT 'Mon..Sun, Monday is the high bit',
    daily_water_ml     SMALLINT UNSIGNED NULL,
    updated_at         TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (patient_id),
    CONSTRAINT fk_health_preferences_patient FOREIGN KEY (patient_id) REFERENCES patients (patient_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT='One row of preferences per patient';

-- claim_id is issued by the clearing house, not by this database; ids start at 2^53 on purpose,
-- so a reader that passes them through a double (JSON, JavaScript) loses the last digit.
CREATE TABLE IF NOT EXISTS insurance_claims (
    claim_id         BIGINT          NOT NULL,
    patient_id       BIGINT UNSIGNED NOT NULL,
    provider_id      BIGINT          NOT NULL COMMENT 'care_providers.provider_id in the tenants database',
    service_date     DATE            NOT NULL,
    benefit_year     YEAR            NOT NULL,
    submitted_at     DATETIME(6)     NOT NULL COMMENT 'UTC wall time',
    amount           DECIMAL(12,2)   NOT NULL,
    approved_amount  DECIMAL(12,2)   NULL,
    currency         CHAR(3)         NOT NULL,
    status           ENUM('submitted','approved','denied','paid') NOT NULL DEFAULT 'submitted',
    diagnosis_code   VARCHAR(10)     NOT NULL COMMENT 'ICD-10-CM',
    denial_reason    VARCHAR(255)    NULL,
    attachment       BLOB            NULL COMMENT 'scanned receipt; arbitrary bytes',
    updated_at       TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (claim_id),
    KEY ix_insurance_claims_patient (patient_id),
    KEY ix_insurance_claims_status (status),
    CONSTRAINT fk_insurance_claims_patient FOREIGN KEY (patient_id) REFERENCES patients (patient_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT='Insurance claims and their adjudication';

-- Search synonyms, maintained by hand by the content team and published to OpenSearch.
-- Name and columns are fixed by the search team's tooling; keep them exactly as they are.
CREATE TABLE IF NOT EXISTS SynonymsTable (
    SynID      INT AUTO_INCREMENT PRIMARY KEY,
    Base_Term  VARCHAR(255) NOT NULL,
    Synonym_1  VARCHAR(255) NULL,
    Synonym_2  VARCHAR(255) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci COMMENT='Search synonyms';
