-- Issue 5/6: the Top-5 counts the converters of its winning goals as uniqExact(visitor_hash): a UInt64
-- stored with each conversion row instead of hashing every visitor id at query time (docs/decisions.md 54).
-- MATERIALIZED: computed on insert (the sink never sends it); parts stored before compute it on read.
ALTER TABLE conversions
    ADD COLUMN IF NOT EXISTS visitor_hash UInt64 MATERIALIZED cityHash64(visitor_id)
