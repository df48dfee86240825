"""The public stream's sources for the edge's SSE endpoint (issue 14): embedded (state database) and
distributed (Kafka topic)."""
