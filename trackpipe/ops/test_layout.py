from processors.runtime.faust.topology import TopologyNames
from trackpipe.ops.kafka_view import decode_layout, pipeline_groups
from trackpipe.ops.layout import (
    EdgeBeat,
    Generation,
    Layout,
    Phase,
    Severity,
    TopicFact,
    expected_topics,
    verdict,
)

NAMES = TopologyNames("ev", "app")


def _facts(expected, override=None):
    facts = {e.topic: TopicFact(e.partitions, 1) for e in expected}
    facts.update(override or {})
    return facts


def _expected(layout):
    return expected_topics(NAMES, layout, "ev.config", "ev.stream")


def test_a_complete_layout_is_ok():
    layout = Layout.initial(4)
    exp = _expected(layout)
    assert verdict(exp, _facts(exp), layout, True, 4) == []
    groups = {e.group for e in exp}
    assert groups == {"processing g0 (current)", "outputs", "shared (one partition)"}
    assert {e.topic for e in exp if e.optional} == {
        f"app-{s}-state-changelog" for s in ("visitor", "click", "fingerprint", "conversion")
    }


def test_missing_topics_are_one_error_naming_them_and_the_fix():
    layout = Layout.initial(4)
    exp = _expected(layout)
    facts = _facts(exp)
    for t in ("ev", "ev.deliveries"):
        del facts[t]
    for e in exp:
        if e.optional:
            del facts[e.topic]  # the changelogs may be absent: Faust creates them
    [problem] = verdict(exp, facts, layout, True, 4)
    assert problem.severity is Severity.ERROR and problem.fix == "trackpipe topics create"
    assert "2 topic(s) missing: ev, ev.deliveries" in problem.what


def test_a_topic_grown_outside_trackpipe_is_a_mismatch_with_the_rescale_fix():
    layout = Layout.initial(4)
    exp = _expected(layout)
    [problem] = verdict(exp, _facts(exp, {"ev": TopicFact(6, 1)}), layout, True, 4)
    assert problem.severity is Severity.ERROR and problem.topic == "ev"
    assert "has 6 partitions, the layout needs 4" in problem.what
    assert problem.fix == "trackpipe ops rescale --partitions 6"
    [out] = verdict(exp, _facts(exp, {"ev.stream": TopicFact(2, 1)}), layout, True, 4)
    assert "outputs" in out.what and "recreate" in out.fix


def test_the_setting_differing_from_the_layout_is_a_warning_only():
    layout = Layout.initial(4)
    exp = _expected(layout)
    [warning] = verdict(exp, _facts(exp), layout, True, 8)
    assert warning.severity is Severity.WARNING and "TRACKPIPE_PARTITIONS is 8" in warning.what
    [unrecorded] = verdict(exp, _facts(exp), layout, False, 4)
    assert unrecorded.severity is Severity.WARNING and "no layout record" in unrecorded.what


def test_a_rescale_expects_both_generations_and_edges_follow_the_target():
    layout = Layout(
        current=Generation(generation=0, partitions=4),
        target=Generation(generation=1, partitions=8),
        outputs_partitions=4,
        phase=Phase.SWITCHING,
    )
    exp = _expected(layout)
    by_topic = {e.topic: e for e in exp}
    assert by_topic["ev"].partitions == 4 and by_topic["ev.g1"].partitions == 8
    assert by_topic["app-g1-visitor-state-changelog"].partitions == 8
    assert by_topic["ev.deliveries"].partitions == 4
    assert layout.produce_to.generation == 1
    assert Layout.initial(4).produce_to.generation == 0
    [warning] = verdict(exp, _facts(exp), layout, True, 4)
    assert "rescale is in progress" in warning.what
    groups = {g: topics for g, _, topics in pipeline_groups(NAMES, layout)}
    assert groups["app"][0] == "ev" and groups["app-g1"][0] == "ev.g1"
    assert groups["app-alert-traffic"] == ["ev.g1"]


def test_the_layout_topic_latest_record_wins_and_edges_are_tracked():
    first = Layout.initial(4)
    second = first.model_copy(update={"current": Generation(generation=1, partitions=8)})
    beat = EdgeBeat(generation=1, at=1.0, host="h")
    record = decode_layout(
        [
            (b"layout", first.model_dump_json().encode()),
            (b"edge/a", beat.model_dump_json().encode()),
            (b"edge/b", beat.model_dump_json().encode()),
            (b"layout", second.model_dump_json().encode()),
            (b"edge/b", None),
            (b"layout", b"not json"),  # unreadable: ignored
        ]
    )
    assert record.layout == second and record.edges == {"a": beat}
