-- Issue 16 item 5 (docs/decisions.md 151): what a writer's counters keep exact. max_days: the longest
-- period (whole days) they answer exactly, 0 = any; retention_days: periods must start within the last
-- retention_days (the rows' TTL took older ones from the exact reading), 0 = any. A row without them
-- (a test's or the bench's writer, keeping everything) answers every whole-day period.
ALTER TABLE report_counters_ready
    ADD COLUMN IF NOT EXISTS max_days UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS retention_days UInt32 DEFAULT 0;
