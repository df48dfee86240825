-- Issue 5: revenue in the project's currency (docs/clickhouse.md, docs/decisions.md).
-- Exchange rates loaded by `trackpipe fx load FILE.csv`: 1 `base` = `rate` `quote` on `day`. One row per
-- (quote, base, day); the latest load wins (ReplacingMergeTree on loaded_at), so loading the same file
-- again changes nothing and a corrected file replaces the rates it names. Read with FINAL.
CREATE TABLE IF NOT EXISTS fx_rates
(
    day         Date,
    base        LowCardinality(String),
    quote       LowCardinality(String),
    rate        Decimal(38, 18),
    loaded_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY (quote, base, day);

-- Per-project settings, set by `trackpipe fx currency PROJECT CODE`: `currency` is the currency reports
-- convert revenue into ('' = none: revenue is the sum of the amounts as sent). The latest update wins.
CREATE TABLE IF NOT EXISTS project_settings
(
    project_id  String,
    currency    LowCardinality(String),
    updated_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY project_id
