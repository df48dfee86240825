-- Issue 4 (stream processing): conversion statuses and attribution on conversions, the session of each
-- raw event, sessions and experiment exposures. Documented in docs/processing.md.

-- Conversions: one row per (project, goal, conversion key), highest version wins (read with FINAL).
-- is_deleted = 1: reversed (rejected/trash/...): filter it out after FINAL. Attribution credits are
-- parallel arrays (one element per model x touch), replaced together with the row.
ALTER TABLE conversions
    ADD COLUMN IF NOT EXISTS status LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS status_class LowCardinality(String) DEFAULT 'normal',
    ADD COLUMN IF NOT EXISTS is_deleted UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS disable_postbacks Bool DEFAULT false,
    ADD COLUMN IF NOT EXISTS events_merged UInt32 DEFAULT 1,
    ADD COLUMN IF NOT EXISTS attribution_method LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS attribution_model LowCardinality(String) DEFAULT 'last_click',
    ADD COLUMN IF NOT EXISTS attributed_touch_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS attributed_click_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS attributed_link_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS attributed_campaign String DEFAULT '',
    ADD COLUMN IF NOT EXISTS attributed_push_hash String DEFAULT '',
    ADD COLUMN IF NOT EXISTS attributed_at Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS time_to_convert_ms Nullable(Int64),
    ADD COLUMN IF NOT EXISTS attribution_window_s UInt32 DEFAULT 2592000,
    ADD COLUMN IF NOT EXISTS credit_model Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS credit_touch_id Array(String),
    ADD COLUMN IF NOT EXISTS credit_kind Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS credit_link_id Array(String),
    ADD COLUMN IF NOT EXISTS credit_campaign Array(String),
    ADD COLUMN IF NOT EXISTS credit_push_hash Array(String),
    ADD COLUMN IF NOT EXISTS credit Array(Decimal(18, 9)),
    ADD COLUMN IF NOT EXISTS credit_revenue Array(Decimal(18, 4));

-- The session each raw event belonged to when it was processed ('' = none, e.g. postbacks).
ALTER TABLE events_raw
    ADD COLUMN IF NOT EXISTS session_id String DEFAULT '';

-- Sessions: a session id encodes (project, visitor, start), so all its versions share the partition.
CREATE TABLE IF NOT EXISTS sessions
(
    project_id      LowCardinality(String),
    account_id      LowCardinality(String),
    visitor_id      String,
    session_id      String,
    started_at      DateTime64(3, 'UTC'),
    ended_at        DateTime64(3, 'UTC'),
    events          UInt32,
    is_deleted      UInt8,
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(started_at)
ORDER BY (project_id, visitor_id, session_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- Experiment exposures: one row per (project, experiment, variation, visitor); the earliest first
-- exposure has the highest version.
CREATE TABLE IF NOT EXISTS variation_exposures
(
    project_id      LowCardinality(String),
    account_id      LowCardinality(String),
    experiment_id   String,
    variation_id    String,
    visitor_id      String,
    first_seen_at   DateTime64(3, 'UTC'),
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, experiment_id, variation_id, visitor_id)
SETTINGS non_replicated_deduplication_window = 10000
