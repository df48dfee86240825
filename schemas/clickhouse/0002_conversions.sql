-- One row per conversion of one goal. (project_id, goal_id, conversion_key) identifies a conversion;
-- the row with the highest version wins, so duplicates and replays never count twice. Not partitioned:
-- ReplacingMergeTree only collapses rows inside one partition, and a duplicate may arrive months later.
CREATE TABLE IF NOT EXISTS conversions
(
    project_id      LowCardinality(String),
    goal_id         String,
    conversion_key  String,
    account_id      LowCardinality(String),
    visitor_id      String,
    event_id        String,
    event_type      LowCardinality(String),
    occurred_at     DateTime64(3, 'UTC'),
    received_at     DateTime64(3, 'UTC'),
    revenue         Decimal(18, 4),
    currency        LowCardinality(String),
    products_count  UInt32,
    transaction_id  String,
    experiment_ids  Array(String),
    variation_ids   Array(String),
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, goal_id, conversion_key)
SETTINGS non_replicated_deduplication_window = 10000
