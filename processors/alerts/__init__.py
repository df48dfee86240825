"""Alert rules (issue 14): sliding windows, rule conditions, the state machine, notification bodies.
Pure: the runtimes persist ``AlertEngine`` snapshots and send what it returns (docs/alerts.md)."""
