"""Explicit step outcomes: every step says ok, drop (with a reason) or dead-letter (with a reason)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Ok(Generic[T]):
    value: T


@dataclass(frozen=True, slots=True)
class Drop:
    """Deliberately not processed further (e.g. a duplicate). Counted, never silent."""

    reason: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Could not be processed; the original bytes go to the dead-letter sink with the reason."""

    reason: str
    raw: bytes = b""


Outcome = Ok[T] | Drop | DeadLetter
