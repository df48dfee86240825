"""``trackpipe alerts list|create|show|delete|snooze``: alert rules through a running trackpipe's admin API.

Talks HTTP to ``trackpipe run`` or a distributed edge (``--url``), with the admin key (prefer the
environment variable ``TRACKPIPE_ADMIN_KEY``): ``/api/v1/alerts``. ``create`` takes the common fields as
options, or a whole rule with ``--json`` (a file name, or ``-`` for standard input; options given too
override its fields).
"""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from trackpipe.cli_deliveries import DEFAULT_URL, KeyOption, UrlOption
from trackpipe.cli_deliveries import _call as call

alerts_app = typer.Typer(
    help="Alert rules (threshold, change, spike, absence) and their snooze.",
    no_args_is_help=True,
)

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _path(alert_id: str, tail: str = "") -> str:
    return f"/api/v1/alerts/{urllib.parse.quote(alert_id, safe='')}{tail}"


def _duration_s(text: str, option: str) -> int:
    """``90s``, ``5m``, ``2h``, ``1d`` or a plain number of seconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    found = _DURATION.match(text)
    if found is None:
        raise typer.BadParameter(f"{option}: a duration such as 300, 90s, 5m, 2h or 1d")
    return int(found.group(1)) * _UNIT_S[found.group(2)]


def _condition(rule: dict[str, Any]) -> str:
    kind = rule["kind"]
    if kind == "threshold":
        return f"{rule['metric']} {rule['op']} {rule['value']:g}"
    if kind == "change":
        unit = " %" if rule["change_mode"] == "percent" else ""
        return f"{rule['metric']} change {rule['op']} {rule['value']:g}{unit} vs a week ago"
    if kind == "spike":
        return f">= {rule['min_count']} and > {rule['factor']:g} x baseline"
    return f"no conversions for {rule['absence_s']} s"


def _scope(rule: dict[str, Any]) -> str:
    parts = [f"{k.removesuffix('_id')}={v}" for k, v in rule["scope"].items() if v is not None]
    return ",".join(parts) or "-"


def _echo_rule(rule: dict[str, Any]) -> None:
    typer.echo(json.dumps(rule, indent=2))


@alerts_app.command("list")
def list_cmd(
    project: Annotated[str | None, typer.Option(help="only this project's")] = None,
    url: UrlOption = DEFAULT_URL,
    admin_key: KeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON answer")] = False,
) -> None:
    """Alert rules, by project and creation time."""
    query = ("?" + urllib.parse.urlencode({"project": project})) if project else ""
    answer = call(url, admin_key, "GET", "/api/v1/alerts" + query)
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    rules = answer["alerts"]
    typer.echo(f"{'id':<14} {'project':<12} {'kind':<9} {'on':<3} {'snoozed until':<20} {'scope':<24} name")
    for r in rules:
        snoozed = (r["snoozed_until"] or "-")[:19]
        on = "yes" if r["enabled"] else "no"
        typer.echo(
            f"{r['id']:<14} {r['project']:<12} {r['kind']:<9} {on:<3} {snoozed:<20} {_scope(r):<24} "
            f"{r['name']}  [{_condition(r)}]"
        )
    typer.echo(f"{len(rules)} rules")


def _read_spec(source: str) -> dict[str, Any]:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"--json: not JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise typer.BadParameter("--json: a JSON object (the rule) is expected")
    return spec


@alerts_app.command("create")
def create_cmd(
    name: Annotated[str | None, typer.Option(help="the rule's name")] = None,
    kind: Annotated[str | None, typer.Option(help="threshold, change, spike or absence")] = None,
    project: Annotated[str | None, typer.Option(help="the project (default: default)")] = None,
    metric: Annotated[str | None, typer.Option(help="conversions, revenue or conversion_rate")] = None,
    op: Annotated[str | None, typer.Option(help="above or below (threshold, change)")] = None,
    value: Annotated[float | None, typer.Option(help="the bound (threshold, change)")] = None,
    change_mode: Annotated[str | None, typer.Option(help="absolute or percent (change)")] = None,
    min_count: Annotated[int | None, typer.Option(help="at least this many conversions (spike)")] = None,
    factor: Annotated[float | None, typer.Option(help="more than this x the baseline (spike)")] = None,
    absence: Annotated[
        str | None, typer.Option(help="no conversions for this long (absence), e.g. 30m")
    ] = None,
    window: Annotated[str | None, typer.Option(help="sliding window, e.g. 5m (default 5m)")] = None,
    pending: Annotated[str | None, typer.Option(help="pending period before firing, e.g. 2m")] = None,
    keep_firing: Annotated[str | None, typer.Option(help="keep firing this long after, e.g. 5m")] = None,
    no_data: Annotated[str | None, typer.Option(help="ok, alerting or keep_state")] = None,
    goal: Annotated[str | None, typer.Option(help="scope: only this goal's conversions")] = None,
    link: Annotated[str | None, typer.Option(help="scope: only this link's")] = None,
    campaign: Annotated[str | None, typer.Option(help="scope: only this campaign's")] = None,
    webhook_url: Annotated[str | None, typer.Option(help="channel: signed JSON webhook")] = None,
    slack_url: Annotated[str | None, typer.Option(help="channel: Slack-compatible incoming webhook")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="create it disabled")] = False,
    spec_json: Annotated[
        str | None, typer.Option("--json", help="the whole rule as JSON: a file, or - for stdin")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    admin_key: KeyOption = None,
) -> None:
    """Create a rule; prints it with its webhook signing secret (shown this once)."""
    spec = _read_spec(spec_json) if spec_json is not None else {}
    fields: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "project": project,
        "metric": metric,
        "op": op,
        "value": value,
        "change_mode": change_mode,
        "min_count": min_count,
        "factor": factor,
        "no_data": no_data,
    }
    durations = (
        ("--window", "window_s", window),
        ("--pending", "pending_s", pending),
        ("--keep-firing", "keep_firing_s", keep_firing),
        ("--absence", "absence_s", absence),
    )
    for option, field, given in durations:
        if given is not None:
            fields[field] = _duration_s(given, option)
    spec.update({k: v for k, v in fields.items() if v is not None})
    scope = {k: v for k, v in (("goal_id", goal), ("link_id", link), ("campaign", campaign)) if v is not None}
    if scope:
        spec["scope"] = {**spec.get("scope", {}), **scope}
    channels = {k: v for k, v in (("webhook_url", webhook_url), ("slack_url", slack_url)) if v is not None}
    if channels:
        spec["channels"] = {**spec.get("channels", {}), **channels}
    if disabled:
        spec["enabled"] = False
    if "name" not in spec or "kind" not in spec:
        raise typer.BadParameter("a rule needs --name and --kind (or both in --json)")
    _echo_rule(call(url, admin_key, "POST", "/api/v1/alerts", spec))


@alerts_app.command("show")
def show_cmd(
    alert_id: Annotated[str, typer.Argument(help="the rule's id")],
    url: UrlOption = DEFAULT_URL,
    admin_key: KeyOption = None,
) -> None:
    """One rule, as JSON."""
    _echo_rule(call(url, admin_key, "GET", _path(alert_id)))


@alerts_app.command("delete")
def delete_cmd(
    alert_id: Annotated[str, typer.Argument(help="the rule's id")],
    url: UrlOption = DEFAULT_URL,
    admin_key: KeyOption = None,
) -> None:
    """Delete a rule."""
    call(url, admin_key, "DELETE", _path(alert_id))
    typer.echo(f"deleted {alert_id}")


@alerts_app.command("snooze")
def snooze_cmd(
    alert_id: Annotated[str, typer.Argument(help="the rule's id")],
    for_: Annotated[
        str | None, typer.Option("--for", help="snooze this long from now, e.g. 30m, 2h, 1d")
    ] = None,
    until: Annotated[str | None, typer.Option(help="snooze until this time (ISO 8601 with a zone)")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="end the snooze now")] = False,
    url: UrlOption = DEFAULT_URL,
    admin_key: KeyOption = None,
) -> None:
    """Snooze a rule (no notifications until then), or end its snooze with --clear."""
    if sum((for_ is not None, until is not None, clear)) != 1:
        raise typer.BadParameter("give exactly one of --for, --until and --clear")
    snoozed: str | None = None
    if for_ is not None:
        snoozed = (datetime.now(UTC) + timedelta(seconds=_duration_s(for_, "--for"))).isoformat()
    elif until is not None:
        snoozed = until
    answer = call(url, admin_key, "PATCH", _path(alert_id), {"snoozed_until": snoozed})
    if answer["snoozed_until"] is None:
        typer.echo(f"{alert_id}: not snoozed")
    else:
        typer.echo(f"{alert_id}: snoozed until {answer['snoozed_until']}")
