"""``trackpipe ops status``: the pipeline's topics against its layout, its consumer groups with their
members and lag per partition, and a verdict; and the start-up check of ``trackpipe worker|edge``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from processors.runtime.faust.topology import TopologyNames
from trackpipe.ops.kafka_view import GroupView, KafkaView, PartitionLag, pipeline_groups
from trackpipe.ops.layout import (
    EdgeBeat,
    Expected,
    Layout,
    Problem,
    Severity,
    TopicFact,
    expected_topics,
    verdict,
)
from trackpipe.settings import Settings

EDGE_ALIVE_S = 30.0  # an edge whose last beat is older is shown as gone


@dataclass
class TopicRow:
    topic: str
    group: str
    expected: int
    partitions: int | None  # None: absent
    replication: int | None
    optional: bool


@dataclass
class StatusReport:
    layout: Layout
    layout_recorded: bool
    edges: dict[str, EdgeBeat]
    topics: list[TopicRow]
    problems: list[Problem]
    groups: list[GroupView] = field(default_factory=list)

    @property
    def verdict(self) -> Severity:
        severities = {p.severity for p in self.problems}
        for s in (Severity.ERROR, Severity.WARNING):
            if s in severities:
                return s
        return Severity.OK

    def as_json(self) -> dict[str, Any]:
        now = time.time()
        return {
            "verdict": self.verdict.value,
            "layout": self.layout.model_dump(mode="json"),
            "layout_recorded": self.layout_recorded,
            "edges": {
                k: {**e.model_dump(mode="json"), "alive": now - e.at <= EDGE_ALIVE_S}
                for k, e in sorted(self.edges.items())
            },
            "topics": [t.__dict__ for t in self.topics],
            "groups": [
                {
                    "group_id": g.group_id,
                    "role": g.role,
                    "state": g.state,
                    "members": [
                        {
                            "member_id": m.member_id,
                            "client_id": m.client_id,
                            "host": m.host,
                            "partitions": [f"{t}:{p}" for t, p in m.partitions],
                        }
                        for m in g.members
                    ],
                    "lag": g.total_lag,
                    "partitions": [p.__dict__ for p in g.lags],
                }
                for g in self.groups
            ],
            "problems": [p.__dict__ | {"severity": p.severity.value} for p in self.problems],
        }


def names_of(settings: Settings) -> TopologyNames:
    return TopologyNames(settings.kafka_topic, settings.worker_app_id)


async def inspect_layout(
    settings: Settings, view: KafkaView
) -> tuple[Layout, bool, dict[str, EdgeBeat], dict[str, TopicFact], list[Expected]]:
    names = names_of(settings)
    facts = await view.topics()
    record = await view.layout(names.layout, names.layout in facts)
    layout = record.layout or Layout.initial(settings.partitions)
    expected = expected_topics(names, layout, settings.kafka_config_topic(), settings.kafka_stream_topic())
    return layout, record.layout is not None, record.edges, facts, expected


async def collect(settings: Settings, groups: bool = True) -> StatusReport:
    async with KafkaView(settings.kafka_bootstrap, settings.kafka_security()) as view:
        layout, recorded, edges, facts, expected = await inspect_layout(settings, view)
        problems = verdict(expected, facts, layout, recorded, settings.partitions)
        rows = [
            TopicRow(
                e.topic,
                e.group,
                e.partitions,
                facts[e.topic].partitions if e.topic in facts else None,
                facts[e.topic].replication if e.topic in facts else None,
                e.optional,
            )
            for e in expected
        ]
        report = StatusReport(layout, recorded, edges, rows, problems)
        if groups:
            for group_id, role, topics in pipeline_groups(names_of(settings), layout):
                report.groups.append(await view.group(group_id, role, topics, facts))
        return report


class LayoutMismatch(RuntimeError):
    """The broker's topics do not match the pipeline's layout: the message says what and how to fix it."""


async def startup_layout(settings: Settings) -> Layout:
    """The layout a worker or an edge runs with; :class:`LayoutMismatch` when its topics are wrong."""
    report = await collect(settings, groups=False)
    errors = [p for p in report.problems if p.severity == Severity.ERROR]
    if errors:
        lines = [f"  {p.topic}: {p.what}\n    fix: {p.fix}" for p in errors]
        raise LayoutMismatch(
            "the Kafka topics do not match the pipeline's layout"
            f" (generation {report.layout.current.generation},"
            f" {report.layout.current.partitions} partitions):\n"
            + "\n".join(lines)
            + "\n  (`trackpipe ops status` shows the whole layout)"
        )
    return report.layout


def render(report: StatusReport) -> str:
    """The human-readable status: layout, topics by group, groups with lag per partition, verdict."""
    lay = report.layout
    out = [
        f"layout: generation {lay.current.generation}, {lay.current.partitions} processing partitions,"
        f" outputs {lay.outputs_partitions} partitions, phase {lay.phase.value}"
        + ("" if report.layout_recorded else " (no layout record: assumed)"),
    ]
    if lay.target is not None:
        out.append(
            f"  rescale target: generation {lay.target.generation}, {lay.target.partitions} partitions"
        )
    if lay.previous is not None:
        out.append(
            f"  previous (kept for `ops rollback` until `ops finalize`): generation"
            f" {lay.previous.generation}, {lay.previous.partitions} partitions"
        )
    now = time.time()
    for edge, beat in sorted(report.edges.items()):
        alive = "alive" if now - beat.at <= EDGE_ALIVE_S else "gone"
        out.append(
            f"  edge {edge} ({beat.host}): generation {beat.generation}, {alive}, {now - beat.at:.0f}s ago"
        )
    group = None
    out.append("\ntopics (grouped: each group must share one partition count):")
    for t in report.topics:
        if t.group != group:
            group = t.group
            out.append(f"  [{group}]")
        if t.partitions is None:
            state = "absent (created by the first worker)" if t.optional else "MISSING"
        else:
            mark = "ok" if t.partitions == t.expected else f"MISMATCH (needs {t.expected})"
            state = f"{t.partitions} partitions x{t.replication}  {mark}"
        out.append(f"    {t.topic:<52} {state}")
    if report.groups:
        out.append("\nconsumer groups (lag = end offset - committed offset):")
    for g in report.groups:
        out.append(f"  {g.group_id}  [{g.role}]  {g.state}, {len(g.members)} member(s), lag {g.total_lag}")
        for m in g.members:
            parts = ", ".join(f"{t}:{p}" for t, p in m.partitions) or "-"
            out.append(f"    member {m.client_id} @ {m.host}: {parts}")
        by_topic: dict[str, list[PartitionLag]] = {}
        for lag in g.lags:
            by_topic.setdefault(lag.topic, []).append(lag)
        for topic, lags in by_topic.items():
            cells = " ".join(
                f"{p.partition}:{p.lag}" + ("" if p.committed is not None else "*") for p in lags
            )
            out.append(f"    {topic}  lag by partition {cells}  (total {sum(p.lag for p in lags)})")
    if any(lag.committed is None for g in report.groups for lag in g.lags):
        out.append("  (* nothing committed yet: lag counted from the earliest offset)")
    out.append("")
    for p in report.problems:
        where = f"{p.topic}: " if p.topic else ""
        out.append(f"{p.severity.value.upper()}: {where}{p.what}\n  fix: {p.fix}")
    out.append(f"verdict: {report.verdict.value}")
    return "\n".join(out)
