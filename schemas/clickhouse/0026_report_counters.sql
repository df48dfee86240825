-- Issue 16 item 5: counters kept by the writers for an exact Top-5 in milliseconds (docs/decisions.md
-- 100-102, processors/counters.py). Each row is the absolute value of one counter in one writer (a stage
-- partition) after the input offset `version`: the highest version per (counter, writer) wins, so a
-- replayed range rewrites the same values instead of adding them; the report sums the writers (FINAL).
-- Goal days: live conversions, revenue, conversions with a revenue per (project, goal, UTC day, currency).
CREATE TABLE IF NOT EXISTS report_goal_days
(
    project_id   LowCardinality(String),
    goal_id      String,
    day          Date,
    currency     LowCardinality(String),
    writer       String,
    conversions  Int64,
    revenue      Decimal(38, 4),
    with_revenue Int64,
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, goal_id, day, currency, writer)
SETTINGS non_replicated_deduplication_window = 10000;

-- Distinct members by (day, previous day) pairs: members of the whole days [a, b) = sum over the pairs
-- with a <= day < b and prev_day < a. Converters of a goal (live conversions), and visitors of a reach
-- (kind/key as in report_visitor_days; 'all'/'*' = every event of the project). prev_day 1970-01-01: none.
CREATE TABLE IF NOT EXISTS report_goal_pairs
(
    project_id LowCardinality(String),
    goal_id    String,
    day        Date,
    prev_day   Date,
    writer     String,
    converters Int64,
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, goal_id, day, prev_day, writer)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS report_visit_pairs
(
    project_id LowCardinality(String),
    kind       LowCardinality(String),
    key        String,
    day        Date,
    prev_day   Date,
    writer     String,
    visitors   Int64,
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project_id, kind, key, day, prev_day, writer)
SETTINGS non_replicated_deduplication_window = 10000;

-- A project's counters are read only once they hold all of its data (its writers counted it from its
-- first event, or a backfill did): until a row here says so, the report takes the exact reading.
CREATE TABLE IF NOT EXISTS report_counters_ready
(
    project_id LowCardinality(String),
    ready      UInt8,
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY project_id
