"""The pipeline's layout: which generation of the processing topics is live, with how many partitions,
and the partition count of the shared outputs. Pure: models and the verdict on what a broker holds.

The layout is one record (key ``layout``) on the compacted one-partition topic ``<events>.layout``,
written by ``trackpipe topics create`` and ``trackpipe ops rescale|rollback|finalize``; every edge and
worker reads it at start (and follows it). A pipeline created before it existed has none: it is then
generation 0 with ``TRACKPIPE_PARTITIONS`` partitions everywhere, exactly what ``topics create`` made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from processors.messages import STAGES
from processors.runtime.faust.topology import TopologyNames

LAYOUT_KEY = b"layout"
EDGE_KEY_PREFIX = "edge/"  # edges' acknowledgements of the generation they produce to


class Generation(BaseModel):
    model_config = ConfigDict(frozen=True)

    generation: int = Field(ge=0)
    partitions: int = Field(ge=1, le=1000)


class Phase(StrEnum):
    STABLE = "stable"  # edges produce to and workers process ``current``
    SWITCHING = "switching"  # edges move to ``target``; workers still drain ``current``
    DRAINING = "draining"  # every edge is on ``target``; workers finish ``current`` up to ``fence``
    MOVING = "moving"  # ``current`` is drained; its state is being copied into ``target``'s changelogs


class Layout(BaseModel):
    model_config = ConfigDict(frozen=True)

    current: Generation
    outputs_partitions: int = Field(ge=1, le=1000)
    phase: Phase = Phase.STABLE
    target: Generation | None = None  # the generation being moved to (phase != stable)
    previous: Generation | None = None  # the generation a rollback returns to (until finalize)
    fence: dict[int, int] = Field(default_factory=dict)  # current events topic's end offsets at the switch
    updated_at: datetime | None = None

    @classmethod
    def initial(cls, partitions: int) -> Layout:
        return cls(current=Generation(generation=0, partitions=partitions), outputs_partitions=partitions)

    @property
    def produce_to(self) -> Generation:
        """Where the edges send events: the target as soon as a rescale starts switching."""
        return self.target if self.target is not None and self.phase != Phase.STABLE else self.current

    def generations(self) -> list[tuple[str, Generation]]:
        out = [("current", self.current)]
        if self.target is not None:
            out.append(("target", self.target))
        if self.previous is not None:
            out.append(("previous", self.previous))
        return out


class EdgeBeat(BaseModel):
    """An edge's acknowledgement: the generation it produces to, at a moment (its heartbeat)."""

    model_config = ConfigDict(frozen=True)

    generation: int
    at: float  # epoch seconds
    host: str = ""


class Severity(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class TopicFact:
    """What the broker says of a topic."""

    partitions: int
    replication: int


@dataclass(frozen=True)
class Expected:
    topic: str
    partitions: int
    group: str  # what must be co-partitioned: topics of one group share ``partitions``
    optional: bool = False  # may be absent (Faust creates the changelogs at the first worker start)


@dataclass(frozen=True)
class Problem:
    severity: Severity
    topic: str
    what: str
    fix: str


def expected_topics(
    names: TopologyNames, layout: Layout, config_topic: str, stream_topic: str
) -> list[Expected]:
    """Every topic the pipeline uses, grouped by what must share a partition count."""
    out: list[Expected] = []
    for role, gen in layout.generations():
        gen_names = names.at(gen.generation)
        changelogs = {gen_names.changelog(s) for s in STAGES}
        group = f"processing g{gen.generation} ({role})"
        for topic in gen_names.processing():
            out.append(Expected(topic, gen.partitions, group, optional=topic in changelogs))
    for topic in [*names.outputs(), stream_topic]:
        out.append(Expected(topic, layout.outputs_partitions, "outputs"))
    for topic in [config_topic, *names.singles()]:
        out.append(Expected(topic, 1, "shared (one partition)"))
    return out


def verdict(
    expected: list[Expected],
    facts: Mapping[str, TopicFact],
    layout: Layout,
    layout_recorded: bool,
    settings_partitions: int,
) -> list[Problem]:
    """What is wrong with the broker's topics for this layout, each with the command that fixes it."""
    problems: list[Problem] = []
    missing = [e.topic for e in expected if e.topic not in facts and not e.optional]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        what = f"{len(missing)} topic(s) missing: {shown}"
        problems.append(Problem(Severity.ERROR, missing[0], what, "trackpipe topics create"))
    for e in expected:
        fact = facts.get(e.topic)
        if fact is None:
            continue
        if fact.partitions != e.partitions:
            problems.append(
                Problem(
                    Severity.ERROR,
                    e.topic,
                    f"has {fact.partitions} partitions, the layout needs {e.partitions} ({e.group}); a"
                    " partition count changed outside trackpipe re-hashes keys away from their state",
                    f"trackpipe ops rescale --partitions {fact.partitions}"
                    if e.group.startswith("processing") and "current" in e.group
                    else "recreate the topic with the layout's count (it holds no processing state)",
                )
            )
    if not layout_recorded:
        problems.append(
            Problem(
                Severity.WARNING,
                "",
                "no layout record: generation 0 with TRACKPIPE_PARTITIONS assumed",
                "trackpipe topics create (writes it)",
            )
        )
    elif settings_partitions != layout.current.partitions and layout.phase == Phase.STABLE:
        problems.append(
            Problem(
                Severity.WARNING,
                "",
                f"TRACKPIPE_PARTITIONS is {settings_partitions} but the live generation has"
                f" {layout.current.partitions} partitions (the layout wins; the setting only sizes new"
                " pipelines)",
                f"trackpipe ops rescale --partitions {settings_partitions}, or set TRACKPIPE_PARTITIONS="
                f"{layout.current.partitions}",
            )
        )
    if layout.phase != Phase.STABLE:
        problems.append(
            Problem(
                Severity.WARNING,
                "",
                f"a rescale is in progress ({layout.phase.value}: g{layout.current.generation} ->"
                f" g{layout.target.generation if layout.target else '?'})",
                "trackpipe ops rescale --resume, or trackpipe ops rollback",
            )
        )
    return problems


def startup_errors(problems: list[Problem]) -> list[Problem]:
    """The problems a worker or an edge refuses to start on."""
    return [p for p in problems if p.severity == Severity.ERROR]
