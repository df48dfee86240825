"""Outbound delivery wiring (issue 13): planning with the batch, the delivery loop and its stores."""

from trackpipe.outbound.loop import POSTBACK_EVENT, AttemptObserver, DeliveryLoop, DueRow, DueStore
from trackpipe.outbound.planning import OutboundPlanning, ensure_schema, goal_lookup, rule_lookup
from trackpipe.outbound.sqlite_store import SqliteDueStore

__all__ = [
    "POSTBACK_EVENT",
    "AttemptObserver",
    "DeliveryLoop",
    "DueRow",
    "DueStore",
    "OutboundPlanning",
    "SqliteDueStore",
    "ensure_schema",
    "goal_lookup",
    "rule_lookup",
]
