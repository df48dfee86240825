-- Issue 5: aggregates behind the Top-5 report's rate base (docs/clickhouse.md, docs/decisions.md).
-- Per project, day and reach kind: the set of visitors (and, for clicks and push opens, of events) as
-- uniqExact states. A state is a set: merging the same visitor or event twice changes nothing, so
-- replays, duplicates and this file's backfill can never over-count. Conversions are not aggregated:
-- the reports read them exactly (FINAL, is_deleted = 0), so status reversals stay exactly right.
-- kind/key: 'all'/'*' every event; 'campaign'/<campaign>; 'link'/<link id> clicks; 'push'/<msgHash> opens.
CREATE TABLE IF NOT EXISTS report_reach_daily
(
    project_id  LowCardinality(String),
    day         Date,
    kind        LowCardinality(String),
    key         String,
    visitors    AggregateFunction(uniqExact, String),
    events      AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, kind, key, day)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS report_reach_daily_mv TO report_reach_daily AS
SELECT project_id,
       toDate(occurred_at) AS day,
       reach.1 AS kind,
       reach.2 AS key,
       uniqExactState(visitor_id) AS visitors,
       uniqExactStateIf(event_id, reach.1 IN ('link', 'push')) AS events
FROM events_raw
ARRAY JOIN arrayFilter(
    r -> r.2 != '',
    [
        ('all', '*'),
        ('campaign', if(seg_campaign != '', seg_campaign, attributes['utm_campaign'])),
        ('link', if(type = 'click', link_id, '')),
        ('push', if(type = 'push_open', push_hash, ''))
    ]
) AS reach
GROUP BY project_id, day, kind, key;

-- Events stored before this view existed (a set union: safe to re-run, safe next to the view).
INSERT INTO report_reach_daily
SELECT project_id,
       toDate(occurred_at) AS day,
       reach.1 AS kind,
       reach.2 AS key,
       uniqExactState(visitor_id) AS visitors,
       uniqExactStateIf(event_id, reach.1 IN ('link', 'push')) AS events
FROM events_raw
ARRAY JOIN arrayFilter(
    r -> r.2 != '',
    [
        ('all', '*'),
        ('campaign', if(seg_campaign != '', seg_campaign, attributes['utm_campaign'])),
        ('link', if(type = 'click', link_id, '')),
        ('push', if(type = 'push_open', push_hash, ''))
    ]
) AS reach
GROUP BY project_id, day, kind, key
