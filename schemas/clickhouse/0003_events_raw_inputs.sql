-- Fields of clicks, postbacks and push platforms (optional fields added to the canonical event).
ALTER TABLE events_raw
    ADD COLUMN IF NOT EXISTS click_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS link_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS status LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS disable_postbacks Bool DEFAULT false,
    ADD COLUMN IF NOT EXISTS push_hash String DEFAULT '',
    ADD COLUMN IF NOT EXISTS app_id LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS device_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS user_id String DEFAULT '',
    ADD COLUMN IF NOT EXISTS event_name LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS attributes Map(String, String)
