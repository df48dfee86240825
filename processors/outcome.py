"""Explicit step outcomes: every step says ok, merged, drop (with a reason) or dead-letter (with a reason).

Reasons are enums, so they can be counted by label (``trackpipe_processing_outcomes_total``) without
parsing text; ``detail`` carries what a person reading a log or a dead letter needs to know.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class DropReason(StrEnum):
    """Why a message was deliberately not processed further."""

    REPLAY = "replay"  # already applied (redelivery after a crash or a rebalance): nothing to change
    NO_GOAL = "no_goal"  # a postback naming no goal: nothing to convert


class DeadLetterReason(StrEnum):
    """Why a record went to the dead-letter sink with its original bytes."""

    UNDECODABLE = "undecodable"  # not an envelope this version can read
    SINK_REJECTED = "sink_rejected"  # quarantined: the sink refused its batch and will not accept it on retry


@dataclass(frozen=True, slots=True)
class Ok(Generic[T]):
    value: T


@dataclass(frozen=True, slots=True)
class Merged(Generic[T]):
    """A duplicate joined an existing conversion (same key): merged into it and counted as a merge."""

    value: T


@dataclass(frozen=True, slots=True)
class Drop:
    """Deliberately not processed further. Counted, never silent."""

    reason: DropReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Could not be processed; the original bytes go to the dead-letter sink with the reason."""

    reason: DeadLetterReason
    detail: str = ""
    raw: bytes = b""

    def describe(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else str(self.reason)


Outcome = Ok[T] | Merged[T] | Drop | DeadLetter
