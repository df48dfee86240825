-- Issue 5/6: the distinct visitors behind the Top-5's rate base, fast and exact (docs/clickhouse.md,
-- docs/decisions.md 54). One row per project, reach, month and visitor holds the days of that month the
-- visitor was seen, as a bit mask (bit 0 = the 1st). A period's visitors = the visitors whose mask meets
-- the period's days: one scan of ~1 row per visitor and month instead of merging daily visitor sets.
-- OR is idempotent: replays, duplicates and this file's backfill never over-count. Visitors are told
-- apart by cityHash64(visitor_id) (uniqExact on a String hashes to 128 bits itself; 64 bits collide
-- about once in 10^7 reports over a million visitors — see decision 54).
-- kind/key: 'all'/'*' every event; 'campaign'/<campaign> (seg_campaign, else attributes['utm_campaign']).
CREATE TABLE IF NOT EXISTS report_visitor_days
(
    project_id   LowCardinality(String),
    kind         LowCardinality(String),
    key          String,
    month        Date,
    visitor_hash UInt64,
    days         SimpleAggregateFunction(groupBitOr, UInt32)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(month)
ORDER BY (project_id, kind, key, month, visitor_hash)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS report_visitor_days_mv TO report_visitor_days AS
SELECT project_id,
       reach.1 AS kind,
       reach.2 AS key,
       toStartOfMonth(occurred_at) AS month,
       cityHash64(visitor_id) AS visitor_hash,
       groupBitOr(bitShiftLeft(toUInt32(1), toUInt8(toDayOfMonth(occurred_at) - 1))) AS days
FROM events_raw
ARRAY JOIN arrayFilter(
    r -> r.2 != '',
    [('all', '*'), ('campaign', if(seg_campaign != '', seg_campaign, attributes['utm_campaign']))]
) AS reach
GROUP BY project_id, kind, key, month, visitor_hash;

-- Events stored before this view existed (OR of the same bits: safe to re-run, safe next to the view).
INSERT INTO report_visitor_days
SELECT project_id,
       reach.1 AS kind,
       reach.2 AS key,
       toStartOfMonth(occurred_at) AS month,
       cityHash64(visitor_id) AS visitor_hash,
       groupBitOr(bitShiftLeft(toUInt32(1), toUInt8(toDayOfMonth(occurred_at) - 1))) AS days
FROM events_raw
ARRAY JOIN arrayFilter(
    r -> r.2 != '',
    [('all', '*'), ('campaign', if(seg_campaign != '', seg_campaign, attributes['utm_campaign']))]
) AS reach
GROUP BY project_id, kind, key, month, visitor_hash;

-- report_reach_daily now keeps only what the masks do not: link clicks and push opens (their event sets).
ALTER TABLE report_reach_daily_mv MODIFY QUERY
SELECT project_id,
       toDate(occurred_at) AS day,
       reach.1 AS kind,
       reach.2 AS key,
       uniqExactState(visitor_id) AS visitors,
       uniqExactStateIf(event_id, reach.1 IN ('link', 'push')) AS events
FROM events_raw
ARRAY JOIN arrayFilter(
    r -> r.2 != '',
    [('link', if(type = 'click', link_id, '')), ('push', if(type = 'push_open', push_hash, ''))]
) AS reach
GROUP BY project_id, day, kind, key;

ALTER TABLE report_reach_daily DELETE WHERE kind IN ('all', 'campaign') SETTINGS mutations_sync = 2
