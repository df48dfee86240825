-- Raw canonical events, one row per accepted event. Replays of the same Kafka range are idempotent:
-- the same event_id replaces itself (ReplacingMergeTree), and batches carry insert_deduplication_token.
CREATE TABLE IF NOT EXISTS events_raw
(
    event_id        String,
    type            LowCardinality(String),
    received_at     DateTime64(3, 'UTC'),
    occurred_at     DateTime64(3, 'UTC'),
    account_id      LowCardinality(String),
    project_id      LowCardinality(String),
    visitor_id      String,
    experiment_ids  Array(String),
    variation_ids   Array(String),
    goal_ids        Array(String),
    revenue         Nullable(Decimal(18, 4)),
    currency        LowCardinality(String),
    products_count  Nullable(UInt32),
    transaction_id  String,
    seg_browser     LowCardinality(String),
    seg_devices     Array(LowCardinality(String)),
    seg_source      LowCardinality(String),
    seg_campaign    String,
    seg_returning   Nullable(UInt8),
    seg_country     LowCardinality(String),
    seg_custom      Array(String),
    client_ip       String,
    user_agent      String,
    source_format   LowCardinality(String),
    schema_version  UInt16
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (project_id, toDate(occurred_at), type, event_id)
SETTINGS non_replicated_deduplication_window = 10000
