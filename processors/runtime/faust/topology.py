"""Names of the topics the worker reads and writes, batch tokens, and output records (no Faust import).

Topics (all with the same partition count N, so Faust co-partitions them; created by
``trackpipe topics create`` / :func:`topology_topics`):

==================================  ==============  ===================================================
topic                               key             carries
==================================  ==============  ===================================================
``<events>``                        visitor id      canonical event envelopes from the edge
``<app>-visitor``                   visitor id      ``Resolved`` conversions (from click / fingerprint)
``<app>-click``                     project+click   click registrations, postbacks naming a click
``<app>-fingerprint``               project+IP+UA   clicks and id-less conversions (auto-attribution)
``<app>-conversion``                project+key     ``Attributed`` conversion events
``<events>.conversions`` (output)   project+key     attributed conversion rows, latest version
``<events>.sessions`` (output)      visitor id      session rows
``<events>.deadletter``             -               undecodable or quarantined records: original bytes,
                                                    ``reason`` and ``detail`` headers
``<events>.outbound-state`` (cmp.)  digest key      outbound planning digests, at the conversion's
                                                    partition (trackpipe.outbound.kafka_planner)
``<events>.deliveries`` (compacted) kind/delivery   due deliveries and their state (sinks.outbound.queue)
``<app>-<stage>-changelog``         stage key       Faust table changelogs (compacted), N partitions
==================================  ==============  ===================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from processors.messages import STAGES, Stage, envelope_chunks
from schemas.conversion_facts import ConversionFactsRecord
from schemas.envelope import ENVELOPE_VERSION, EnvelopeError


@dataclass(frozen=True)
class TopologyNames:
    """Topic names of one pipeline. ``events`` and ``app_id`` are the base names (settings); the
    **processing** topics (the events input, the stage topics, the tables' changelogs) belong to a
    ``generation`` (docs/rescaling.md): generation 0 uses the base names, generation g > 0 the topics
    ``<events>.g<g>`` and ``<app>-g<g>-...`` (so a rescale creates new ones and keeps the old for a
    rollback). The **outputs** and the shared state topics keep the base names in every generation."""

    events: str
    app_id: str
    generation: int = 0

    def at(self, generation: int) -> TopologyNames:
        return TopologyNames(self.events, self.app_id, generation)

    @property
    def events_in(self) -> str:
        """The topic the edges produce to and the visitor stage reads (this generation's)."""
        return self.events if self.generation == 0 else f"{self.events}.g{self.generation}"

    @property
    def app(self) -> str:
        """The Faust app id (and consumer group) of this generation."""
        return self.app_id if self.generation == 0 else f"{self.app_id}-g{self.generation}"

    @property
    def deadletter(self) -> str:
        return f"{self.events}.deadletter"

    def stage(self, stage: Stage) -> str:
        return f"{self.app}-{stage}"

    def changelog(self, stage: Stage) -> str:
        """The stage table's changelog (Faust names it ``<app id>-<table>-changelog``)."""
        return f"{self.app}-{stage}-state-changelog"

    @property
    def conversions_out(self) -> str:
        return f"{self.events}.conversions"

    @property
    def sessions_out(self) -> str:
        return f"{self.events}.sessions"

    @property
    def outbound_state(self) -> str:
        return f"{self.events}.outbound-state"

    @property
    def deliveries(self) -> str:
        return f"{self.events}.deliveries"

    @property
    def alert_input(self) -> str:
        """Alert rules' input, re-keyed by project (trackpipe.alerting.kafka)."""
        return f"{self.events}.alert-input"

    @property
    def alert_state(self) -> str:
        """Alert engine snapshots per project (compacted)."""
        return f"{self.events}.alert-state"

    @property
    def alert_status(self) -> str:
        """Each alert rule's published status, for the edges (one partition, compacted)."""
        return f"{self.events}.alert-status"

    @property
    def endpoints(self) -> str:
        """The delivery endpoints' circuit states (one partition, compacted)."""
        return f"{self.events}.endpoints"

    @property
    def layout(self) -> str:
        """The pipeline's current generation and its partitions (one partition, compacted)."""
        return f"{self.events}.layout"

    def compacted(self) -> frozenset[str]:
        """Topics that hold state (latest record per key): created with ``cleanup.policy=compact``."""
        return frozenset(
            {self.outbound_state, self.deliveries, self.alert_state, *(self.changelog(s) for s in STAGES)}
        )

    def processing(self) -> list[str]:
        """This generation's topics: all with the generation's partition count (co-partitioned)."""
        return [
            self.events_in,
            *(self.stage(s) for s in STAGES if s != "visitor"),
            self.stage("visitor"),
            *(self.changelog(s) for s in STAGES),
        ]

    def outputs(self) -> list[str]:
        """The topics shared by every generation, with the partition count they were created with."""
        return [
            self.deadletter,
            self.conversions_out,
            self.sessions_out,
            self.outbound_state,
            self.deliveries,
            self.alert_input,
            self.alert_state,
        ]

    def singles(self) -> list[str]:
        """Compacted one-partition topics shared by every process (besides the config topic)."""
        return [self.endpoints, self.alert_status, self.layout]

    def all(self) -> list[str]:
        """The processing topics (without the changelogs, which Faust creates) and the outputs."""
        changelogs = {self.changelog(s) for s in STAGES}
        return [t for t in self.processing() if t not in changelogs] + self.outputs()


def topology_topics(events_topic: str, app_id: str) -> list[str]:
    return TopologyNames(events_topic, app_id).all()


def batch_token(spans: Sequence[tuple[str, int, int]]) -> str:
    """Deterministic id of a batch: per topic partition, the first and last offset it holds."""
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for topic, partition, offset in spans:
        lo, hi = ranges.get((topic, partition), (offset, offset))
        ranges[(topic, partition)] = (min(lo, offset), max(hi, offset))
    return ",".join(f"{t}:{p}:{lo}-{hi}" for (t, p), (lo, hi) in sorted(ranges.items()))


class _ConversionFacts(msgspec.Struct):
    envelope: int
    kind: Literal["conversions"]
    schema: int
    items: list[ConversionFactsRecord]


class _ConversionItems(msgspec.Struct):
    items: list[msgspec.Raw]


_FACTS = msgspec.json.Decoder(_ConversionFacts)
_ITEMS = msgspec.json.Decoder(_ConversionItems)


def decode_conversion_facts(value: bytes) -> list[ConversionFactsRecord]:
    """What outbound planning reads of the rows of one ``<events>.conversions`` record (:func:`encode_rows`
    of ``"conversions"``; the rows' other fields are skipped unread); raises
    :class:`schemas.envelope.EnvelopeError` for anything else."""
    try:
        found = _FACTS.decode(value)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise EnvelopeError(f"not a conversions record: {exc}") from None
    if found.envelope != ENVELOPE_VERSION:
        raise EnvelopeError(f"conversions record of envelope version {found.envelope}")
    return found.items


def conversion_items(value: bytes) -> list[bytes]:
    """The rows of a record :func:`decode_conversion_facts` read, each as the JSON it holds."""
    return [bytes(item) for item in _ITEMS.decode(value).items]


def encode_rows(kind: str, rows: Sequence[Any]) -> list[bytes]:
    """Output envelope records of ``rows``, each within the stage record size limit."""
    head = b'{"envelope":%d,"kind":"%s","schema":1,"items":[' % (ENVELOPE_VERSION, kind.encode())
    return envelope_chunks(head, (r.__pydantic_serializer__.to_json(r) for r in rows))
