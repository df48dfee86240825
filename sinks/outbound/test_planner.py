from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.config import Goal, Link, signing_key_records
from schemas.outbound.postbacks import Method, TemplateError
from schemas.outbound.signing import KeyRing, generate_secret
from schemas.outbound.ssrf import AllowList
from sinks.outbound.events import WebhookEvent, conversion_key
from sinks.outbound.planner import (
    PostbackPlan,
    keys_of,
    plan,
    plan_postbacks,
    postback_key,
    postback_keys_of,
    postback_rule,
)
from sinks.outbound.templates import FiredDigest
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


# --- S2S postbacks --------------------------------------------------------------------------------------

PB = "https://src.example/pb?subid={external_id}&status={status}&payout={payout}"


def link(lid: str = "456", project: str = "p1", template: str | None = PB, **fields: Any) -> Link:
    return Link(
        id=lid,
        project=project,
        url="https://shop.example/",
        created_at=T0,
        updated_at=T0,
        postback_template=template,
        **fields,
    )


def rules(*links: Link):
    by = {(lk.project, lk.id): postback_rule(lk, AllowList()) for lk in links}
    return lambda project, lid: by.get((project, lid))


def pb_plan(rows, fired=None, *links: Link) -> PostbackPlan:
    return plan_postbacks(rows, fired or {}, rules(*(links or (link(),))), NOW)


def test_postback_fires_once_per_conversion_and_status_with_the_rendered_url():
    rows = [conv(1, status="approved", attributed_external_click_id="XYZ")]
    planned = pb_plan(rows)
    [due] = planned.due
    assert due.delivery_id.startswith("pb_") and due.method is Method.GET and due.body == b""
    assert due.url == "https://src.example/pb?subid=XYZ&status=approved&payout=99.99"
    assert (due.project, due.goal_id, due.link_id, due.next_at) == ("p1", "g1", "456", NOW)
    assert list(planned.digests) == [postback_key(rows[0])]
    assert pb_plan(rows).due == planned.due  # a replay plans the same id and request
    assert pb_plan(rows, planned.digests).is_empty  # committed: the same row plans nothing
    later = [conv(2, status="approved", revenue=50, attributed_external_click_id="XYZ")]
    again = pb_plan(later, planned.digests)
    assert again.due == [] and again.digests[postback_key(rows[0])].version == 2  # already fired


def test_postback_updates_status_map_post_and_disable():
    rows = [
        conv(1, status="approved", attributed_external_click_id="A"),
        conv(2, status="approved", revenue=50, attributed_external_click_id="A"),
    ]
    updating = link(postback_updates=True, postback_status_map="sale=bill")
    due = pb_plan(rows, None, updating).due
    assert [d.url.split("?")[1] for d in due] == [
        "subid=A&status=bill&payout=99.99",
        "subid=A&status=bill&payout=50",
    ]
    assert len({d.delivery_id for d in due}) == 2
    post = link(postback_method=Method.POST)
    [sent] = pb_plan(rows[:1], None, post).due
    assert sent.method is Method.POST and sent.url == "https://src.example/pb"
    assert sent.body == b"subid=A&status=approved&payout=99.99"
    off = pb_plan([conv(1, disable_postbacks=True, attributed_external_click_id="A")])
    assert off.due == [] and list(off.digests)  # the version is remembered, nothing fires


def test_postbacks_only_for_links_with_a_template_in_the_rows_project():
    rows = [
        conv(1, attributed_link_id=""),
        conv(1, conversion_key="k2", attributed_link_id="L2"),
        conv(1, conversion_key="k3", attributed_link_id="L3"),
        conv(1, conversion_key="k4", attributed_link_id="456", attributed_external_click_id="X"),
    ]
    planned = pb_plan(rows, None, link("L2", template=None), link("L3", project="other"), link())
    assert [d.link_id for d in planned.due] == ["456"]
    assert list(planned.digests) == [postback_key(rows[3])]
    assert postback_keys_of(rows + rows) == [postback_key(r) for r in rows[1:]]


def test_postback_needs_the_external_id_its_template_uses():
    assert pb_plan([conv(1)]).due == []  # no external click id captured on the click
    static = link(template="https://src.example/pb?c={click_id}")
    assert [d.url for d in pb_plan([conv(1)], None, static).due] == ["https://src.example/pb?c=789"]


def test_fired_digest_round_trips():
    [digest] = pb_plan([conv(1, attributed_external_click_id="A")]).digests.values()
    assert FiredDigest.from_json(digest.to_json()) == digest
    with pytest.raises(ValueError):
        FiredDigest.from_json(b'{"d": 99}')


def test_postback_rule_from_a_link():
    assert postback_rule(link(template=None), AllowList()) is None
    rule = postback_rule(
        link(postback_statuses="normal,provisional", postback_status_map="lead=install"), AllowList()
    )
    assert rule is not None and rule.link_id == "456" and "provisional" in rule.statuses.classes
    with pytest.raises(TemplateError):
        postback_rule(link(template="http://127.0.0.1/pb"), AllowList())  # refused by the SSRF guard
