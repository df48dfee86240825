from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.outbound.ssrf import AllowList, parse_allow_networks
from schemas.rows import Conversion
from sinks.outbound.events import conversion_id
from sinks.outbound.templates import (
    FORM_CONTENT_TYPE,
    Fire,
    FiredDigest,
    Hold,
    HoldReason,
    Method,
    PostbackRule,
    PostbackTemplate,
    TemplateError,
    TemplateProblem,
    decide_postback,
    macro_values,
    parse_status_filter,
    parse_status_map,
    parse_template,
    render,
)

T0 = datetime(2026, 1, 21, 12, 0, tzinfo=UTC)
NONE = AllowList()
KEITARO = (
    "https://tracker.example/postback?subid={external_id}&status={status}&payout={payout}&cur={currency}"
)


def conv(version: int = 1, **changes: Any) -> Conversion:
    fields: dict[str, Any] = {
        "project_id": "p1",
        "goal_id": "g1",
        "conversion_key": "click:c1",
        "account_id": "acc",
        "visitor_id": "v1",
        "event_id": "e1",
        "event_type": "postback",
        "occurred_at": T0,
        "received_at": T0,
        "revenue": Decimal("12.5000"),
        "currency": "USD",
        "products_count": 0,
        "transaction_id": "ORD-1",
        "experiment_ids": (),
        "variation_ids": (),
        "version": version,
        "status": "approved",
        "attributed_click_id": "c1",
        "attributed_link_id": "L1",
    }
    fields.update(changes)
    return Conversion(**fields)


def problem(text: str, method: str = "GET", allow: AllowList = NONE) -> tuple[TemplateProblem, str]:
    with pytest.raises(TemplateError) as info:
        parse_template(text, method, allow=allow)
    assert info.value.retriable is False
    return info.value.problem, str(info.value)


def rule(text: str = KEITARO, **kw: Any) -> PostbackRule:
    return PostbackRule("L1", parse_template(text, kw.pop("method", "GET"), allow=NONE), **kw)


def test_a_keitaro_style_template_renders_every_macro() -> None:
    text = (
        "https://src.example/pb/{goal_id}?ext={external_id}&cid={click_id}&conv={conversion_id}"
        "&p={payout}&c={currency}&s={status}&o={order_id}&t={timestamp}"
    )
    t = parse_template(text, allow=NONE)
    assert t.macros == frozenset(
        {
            "external_id",
            "click_id",
            "conversion_id",
            "goal_id",
            "payout",
            "currency",
            "status",
            "order_id",
            "timestamp",
        }
    )
    req = render(t, macro_values(conv(), "XYZ", "sale"))
    assert req.method is Method.GET and req.body is None
    assert req.url == (
        f"https://src.example/pb/g1?ext=XYZ&cid=c1&conv={conversion_id(conv())}"
        f"&p=12.5&c=USD&s=sale&o=ORD-1&t={int(T0.timestamp())}"
    )


def test_unknown_macros_are_named_when_the_link_is_saved() -> None:
    kind, message = problem("https://x.example/?a={clickid}&b={Payout}&c={payout}")
    assert kind is TemplateProblem.UNKNOWN_MACRO
    assert "{Payout}, {clickid}" in message and "known: {external_id}" in message


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("", TemplateProblem.EMPTY),
        ("https://x.example/?a={payout", TemplateProblem.BAD_BRACE),
        ("https://x.example/?a=payout}", TemplateProblem.BAD_BRACE),
        ("https://x.example/?a={{payout}}", TemplateProblem.BAD_BRACE),
        ("https://{external_id}.example/", TemplateProblem.MACRO_IN_HOST),
        ("https://x.example:{payout}/", TemplateProblem.MACRO_IN_HOST),
        ("{status}://x.example/", TemplateProblem.MACRO_IN_HOST),
        ("https://x.example/#{status}", TemplateProblem.FRAGMENT),
        ("https://127.0.0.1/?s={status}", TemplateProblem.DESTINATION),
        ("https://169.254.169.254/?s={status}", TemplateProblem.DESTINATION),
        ("ftp://x.example/?s={status}", TemplateProblem.DESTINATION),
        ("https://u:p@x.example/?s={status}", TemplateProblem.DESTINATION),
        ("https://x.example/" + "a" * 2048, TemplateProblem.TOO_LONG),
    ],
)
def test_templates_refused_at_save_time(text: str, kind: TemplateProblem) -> None:
    assert problem(text)[0] is kind


def test_method_is_get_or_post_and_the_allow_list_applies() -> None:
    assert problem(KEITARO, "PUT")[0] is TemplateProblem.BAD_METHOD
    assert parse_template(KEITARO, "post", allow=NONE).method is Method.POST
    local = parse_allow_networks("127.0.0.0/8")
    assert parse_template("http://127.0.0.1:9000/pb?s={status}", allow=local).uses("status")


def test_post_sends_the_query_as_a_form_body() -> None:
    t = parse_template(KEITARO, "POST", allow=NONE)
    req = render(t, macro_values(conv(), "a b&c", "bill"))
    assert req.method is Method.POST and req.url == "https://tracker.example/postback"
    assert req.content_type == FORM_CONTENT_TYPE
    assert req.body is not None
    assert parse_qs(req.body.decode()) == {
        "subid": ["a b&c"],
        "status": ["bill"],
        "payout": ["12.5"],
        "cur": ["USD"],
    }


HOSTILE = [
    "a&admin=1",
    "x#frag",
    "../../etc",
    "a/b?c=d",
    "line\r\nX-Injected: 1",
    "100%",
    "ü€",
    "{status}",
    " ",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_values_cannot_inject_parameters_paths_or_headers(value: str) -> None:
    t = parse_template("https://src.example/pb/{external_id}?s={status}&ext={external_id}", allow=NONE)
    req = render(t, macro_values(conv(), value, value))
    parts = urlsplit(req.url)
    assert parts.netloc == "src.example" and parts.fragment == ""
    assert parts.path.count("/") == 2 and unquote(parts.path.split("/")[-1]) == value
    assert set(parse_qs(parts.query, keep_blank_values=True)) == {"s", "ext"}
    assert parse_qs(parts.query, keep_blank_values=True)["ext"] == [value]
    assert "\r" not in req.url and "\n" not in req.url and " " not in req.url


@given(st.text(max_size=40), st.text(max_size=40))
def test_any_value_round_trips_and_keeps_the_url_shape(ext: str, status: str) -> None:
    t = parse_template("https://src.example/pb/{external_id}?s={status}&o={order_id}", allow=NONE)
    req = render(t, macro_values(conv(), ext, status))
    parts = urlsplit(req.url)
    assert parts.netloc == "src.example" and not parts.fragment
    assert unquote(parts.path[len("/pb/") :]) == ext
    q = parse_qs(parts.query, keep_blank_values=True)
    assert set(q) <= {"s", "o"} and q.get("s", [""]) == [status]
    assert req.url.isascii() and req.url.isprintable()


def test_status_filter_and_rename_map() -> None:
    f = parse_status_filter(None)
    assert f.fires(conv()) and not f.fires(conv(status="pending", status_class="provisional"))
    assert not f.fires(conv(status="rejected", status_class="reversed", is_deleted=True))
    f2 = parse_status_filter("sale, lead hold")
    assert f2.classes == frozenset({"normal", "provisional"}) and f2.statuses == frozenset({"hold"})
    m = parse_status_map("lead=install sale=bill rejected=trash")
    assert m.text_for(conv(status="approved")) == "bill"
    assert m.text_for(conv(status="")) == "bill"
    assert m.text_for(conv(status="pending", status_class="provisional")) == "install"
    assert m.text_for(conv(status="Cancelled", status_class="reversed")) == "trash"
    raw = parse_status_map("approved=ok normal=fine")
    assert raw.text_for(conv(status="Approved ")) == "ok"
    assert raw.text_for(conv(status="")) == "fine"
    assert parse_status_map("").text_for(conv(status="")) == "approved"
    assert parse_status_map("").text_for(conv(status="Pending", status_class="provisional")) == "Pending"


@pytest.mark.parametrize("text", ["lead", "lead=", "=x", "a=b a=c", "a=b=c", "le ad=x=y", "bad!=x"])
def test_bad_status_maps_are_refused(text: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_status_map(text)
    assert info.value.problem is TemplateProblem.BAD_STATUS_MAP


def test_bad_status_filters_are_refused() -> None:
    with pytest.raises(TemplateError) as info:
        parse_status_filter("normal, sale!")
    assert info.value.problem is TemplateProblem.BAD_STATUS_FILTER


def fire(outcome: Fire | Hold) -> Fire:
    assert isinstance(outcome, Fire), outcome
    return outcome


def hold(outcome: Fire | Hold) -> HoldReason:
    assert isinstance(outcome, Hold), outcome
    return outcome.reason


def test_fires_once_per_conversion_and_status_by_default() -> None:
    r = rule(status_map=parse_status_map("sale=bill"), statuses=parse_status_filter("normal provisional"))
    pending = fire(decide_postback(conv(1, status="pending", status_class="provisional"), r, "XYZ", None))
    assert "status=pending" in pending.request.url and "subid=XYZ" in pending.request.url
    approved = fire(decide_postback(conv(2), r, "XYZ", pending.digest))
    assert "status=bill" in approved.request.url  # approved is a normal ("sale") conversion
    assert approved.delivery_id != pending.delivery_id
    # value changes, same status: not again (no opt-in)
    assert (
        hold(decide_postback(conv(3, revenue=Decimal(99)), r, "XYZ", approved.digest))
        is HoldReason.ALREADY_FIRED
    )
    assert hold(decide_postback(conv(2), r, "XYZ", approved.digest)) is HoldReason.DUPLICATE
    assert hold(decide_postback(conv(1), r, "XYZ", approved.digest)) is HoldReason.STALE
    # a replay from scratch after a crash gives the same id and request
    assert fire(decide_postback(conv(2), r, "XYZ", pending.digest)) == approved


def test_updates_opt_in_fires_when_the_request_changes() -> None:
    r = rule(updates=True)
    a = fire(decide_postback(conv(1), r, "XYZ", None))
    b = fire(decide_postback(conv(2, revenue=Decimal(99)), r, "XYZ", a.digest))
    assert "payout=99" in b.request.url and b.delivery_id != a.delivery_id
    assert (
        hold(decide_postback(conv(3, visitor_id="v9", revenue=Decimal(99)), r, "XYZ", b.digest))
        is HoldReason.UNCHANGED
    )


def test_disable_postbacks_filtered_statuses_and_missing_external_id_fire_nothing() -> None:
    r = rule()
    out = decide_postback(conv(1, disable_postbacks=True), r, "XYZ", None)
    assert hold(out) is HoldReason.DISABLED
    assert isinstance(out, Hold) and out.digest == FiredDigest(1)
    rev = conv(2, status="rejected", status_class="reversed", is_deleted=True)
    assert hold(decide_postback(rev, r, "XYZ", None)) is HoldReason.FILTERED
    assert hold(decide_postback(conv(1), r, "", None)) is HoldReason.NO_EXTERNAL_ID
    # a template that does not need the source's id fires without one
    no_ext = rule("https://src.example/pb?cid={click_id}")
    assert fire(decide_postback(conv(1), no_ext, "", None)).request.url == "https://src.example/pb?cid=c1"
    # a later row without the flag fires
    assert isinstance(out, Hold)
    assert fire(decide_postback(conv(2), r, "XYZ", out.digest)).request.method is Method.GET


def test_a_template_object_keeps_its_text() -> None:
    t = parse_template("  " + KEITARO + " ", allow=NONE)
    assert isinstance(t, PostbackTemplate) and t.text == KEITARO
