from datetime import UTC, datetime
from typing import Any

from schemas.config import Goal, signing_key_records
from schemas.outbound.signing import KeyRing, generate_secret
from sinks.outbound.events import WebhookEvent, conversion_key
from sinks.outbound.planner import keys_of, plan
from sinks.outbound.test_events import T0, conv

NOW = datetime(2026, 1, 21, 12, 5, tzinfo=UTC)


def goal(
    gid: str = "g1", project: str = "p1", url: str | None = "https://hooks.example/h", ring: bool = True
) -> Goal:
    fields: dict[str, Any] = {
        "id": gid,
        "project": project,
        "name": "n",
        "postback_url": url,
        "token": "t",
        "created_at": T0,
        "updated_at": T0,
    }
    if ring:
        fields["signing_keys"] = signing_key_records(KeyRing.new(generate_secret(), T0))
    return Goal(**fields)


def lookup(*goals: Goal):
    by = {(g.project, g.id): g for g in goals}
    return lambda project, gid: by.get((project, gid))


def test_plans_due_deliveries_only_for_goals_with_url_and_key_ring():
    rows = [
        conv(1),
        conv(1, goal_id="g2", conversion_key="k2"),
        conv(1, goal_id="g3", conversion_key="k3"),
        conv(1, goal_id="g4", conversion_key="k4"),
    ]
    goals = lookup(goal(), goal("g2", url=None), goal("g3", ring=False), goal("g4", project="other"))
    planned = plan(rows, {}, goals, NOW)
    assert [(d.goal_id, d.event, d.url, d.next_at) for d in planned.due] == [
        ("g1", WebhookEvent.TRACKED, "https://hooks.example/h", NOW)
    ]
    assert list(planned.digests) == [conversion_key(rows[0])]


def test_replay_plans_the_same_ids_and_bodies_and_stored_digests_stop_duplicates():
    rows = [conv(1), conv(2, status="approved", revenue=25)]
    first = plan(rows, {}, lookup(goal()), NOW)
    again = plan(rows, {}, lookup(goal()), NOW)
    assert [(d.delivery_id, d.body) for d in first.due] == [(d.delivery_id, d.body) for d in again.due]
    assert [d.event for d in first.due] == [WebhookEvent.TRACKED, WebhookEvent.UPDATED]
    after = plan(rows, first.digests, lookup(goal()), NOW)  # committed: the same rows plan nothing
    assert after.due == [] and after.digests == {}


def test_keys_of_each_conversion_once():
    rows = [conv(1), conv(2), conv(1, conversion_key="k2")]
    assert keys_of(rows) == [conversion_key(rows[0]), conversion_key(rows[2])]
