-- Issue 13 (outbound): the delivery log, one row per attempt of a goal webhook or S2S postback, written
-- by the delivery loop's observer (trackpipe/outbound/delivery_log.py) and read by the admin API
-- (GET /api/v1/deliveries: a delivery's latest state is the row of its latest attempt, argMax on `at`).
-- status: the delivery's status after the attempt; status_code 0 = no HTTP answer; response_body: at
-- most the first kilobyte of the answer. Retention: TRACKPIPE_RETENTION_DAYS on `at` (sinks/report_retention.py).
CREATE TABLE IF NOT EXISTS delivery_attempts
(
    delivery_id     String,
    project         LowCardinality(String),
    goal_id         String,
    link_id         String,
    kind            LowCardinality(String),
    event           LowCardinality(String),
    method          LowCardinality(String),
    url             String,
    attempt         UInt32,
    at              DateTime64(3, 'UTC'),
    status          LowCardinality(String),
    status_code     UInt16,
    latency_ms      UInt32,
    error           String,
    response_body   String,
    dead_reason     LowCardinality(String),
    next_at         Nullable(DateTime64(3, 'UTC')),
    created_at      DateTime64(3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (project, delivery_id, at)
SETTINGS non_replicated_deduplication_window = 1000
