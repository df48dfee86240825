"""The benchmark's topics, made by ``trackpipe topics create`` itself (whatever topics the pipeline needs)."""

from __future__ import annotations

from bench.procs import run_module


def topic_env(bootstrap: str, topic: str, partitions: int) -> dict[str, str]:
    return {
        "TRACKPIPE_KAFKA_BOOTSTRAP": bootstrap,
        "TRACKPIPE_KAFKA_TOPIC": topic,
        "TRACKPIPE_PARTITIONS": str(partitions),
    }


def create_topics(bootstrap: str, topic: str, partitions: int, env: dict[str, str] | None = None) -> None:
    """Run ``trackpipe topics create`` for ``topic`` (unique names: the topics go with the broker).

    ``env`` adds settings that name more topics (e.g. ``TRACKPIPE_WORKER_APP_ID`` for the worker's own)."""
    full = {**topic_env(bootstrap, topic, partitions), **(env or {})}
    run_module("trackpipe.cli", ["topics", "create"], timeout=120, env=full)
