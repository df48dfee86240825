"""``trackpipe deliveries list|retry``: outbound deliveries through a running trackpipe's admin API.

Talks HTTP to ``trackpipe run`` or a distributed edge (``--url``), with the admin key (prefer the
environment variable ``TRACKPIPE_ADMIN_KEY``): ``GET /api/v1/deliveries`` and the retry calls.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated, Any

import typer

deliveries_app = typer.Typer(
    help="Outbound deliveries (goal webhooks, S2S postbacks): the delivery log and manual retry.",
    no_args_is_help=True,
)

UrlOption = Annotated[str, typer.Option(help="a running trackpipe (run or edge)")]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--admin-key",
        envvar="TRACKPIPE_ADMIN_KEY",
        help="the admin key (prefer the environment variable TRACKPIPE_ADMIN_KEY)",
        show_default=False,
    ),
]
ProjectOption = Annotated[str | None, typer.Option(help="only this project's")]
GoalOption = Annotated[str | None, typer.Option(help="only this goal's (webhooks)")]
LinkOption = Annotated[str | None, typer.Option(help="only this link's (S2S postbacks)")]
SinceOption = Annotated[
    str | None, typer.Option(help="last attempt at or after this time (ISO 8601 with a zone)")
]
DEFAULT_URL = "http://127.0.0.1:8080"


def _call(url: str, key: str | None, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise typer.BadParameter("--url must be http(s)://host:port")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method, headers=headers)  # noqa: S310 - scheme checked
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - scheme checked above
            raw = resp.read()
            return json.loads(raw) if raw else None  # 204: no body
    except urllib.error.HTTPError as exc:
        typer.echo(f"error {exc.code}: {exc.read().decode(errors='replace')}", err=True)
        if exc.code == 401:
            typer.echo("the admin API wants the admin key: set TRACKPIPE_ADMIN_KEY", err=True)
        raise typer.Exit(1) from None
    except urllib.error.URLError as exc:
        typer.echo(f"cannot reach {url}: {exc.reason}", err=True)
        raise typer.Exit(1) from None


def _filters(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@deliveries_app.command("list")
def list_cmd(
    project: ProjectOption = None,
    goal: GoalOption = None,
    link: LinkOption = None,
    status: Annotated[str | None, typer.Option(help="pending, delivered, failed or dead")] = None,
    since: SinceOption = None,
    limit: Annotated[int | None, typer.Option(help="deliveries (default 100, at most 1000)")] = None,
    attempts: Annotated[bool, typer.Option("--attempts", help="each attempt too")] = False,
    url: UrlOption = DEFAULT_URL,
    admin_key: KeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON answer")] = False,
) -> None:
    """Deliveries with their latest state, most recently attempted first."""
    params = _filters(project=project, goal=goal, link=link, status=status, since=since, limit=limit)
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    answer = _call(url, admin_key, "GET", "/api/v1/deliveries" + query)
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    rows = answer["deliveries"]
    typer.echo(f"{'id':<40} {'kind':<8} {'status':<9} {'tries':>5} {'code':>4}  {'last attempt':<24} url")
    for d in rows:
        last = d["attempts_log"][-1] if d["attempts_log"] else {}
        code = last.get("status_code") or "-"
        typer.echo(
            f"{d['id']:<40} {d['kind']:<8} {d['status']:<9} {d['attempts']:>5} {code!s:>4}  "
            f"{d['last_attempt_at'][:23]:<24} {_short(d['url'], 60)}"
        )
        if attempts:
            for a in d["attempts_log"]:
                error = f" {a['error']}" if a["error"] else ""
                typer.echo(
                    f"    #{a['attempt']} {a['at'][:23]} {a['status']:<9} {a['status_code'] or '-'!s:>4} "
                    f"{a['latency_ms']} ms{error}"
                )
    typer.echo(f"{len(rows)} deliveries")


@deliveries_app.command("retry")
def retry_cmd(
    ids: Annotated[
        list[str] | None, typer.Argument(help="delivery ids; none: every match of the filters")
    ] = None,
    project: ProjectOption = None,
    goal: GoalOption = None,
    link: LinkOption = None,
    status: Annotated[str | None, typer.Option(help="failed or dead (default: both)")] = None,
    since: SinceOption = None,
    limit: Annotated[int | None, typer.Option(help="at most this many (default 1000)")] = None,
    url: UrlOption = DEFAULT_URL,
    admin_key: KeyOption = None,
) -> None:
    """Retry failed or dead deliveries now: the ids given, or every one matching the filters."""
    filters = _filters(project=project, goal=goal, link=link, status=status, since=since, limit=limit)
    if ids and filters:
        raise typer.BadParameter("give delivery ids or filters, not both")
    if ids:
        for delivery_id in ids:
            path = f"/api/v1/deliveries/{urllib.parse.quote(delivery_id, safe='')}/retry"
            _call(url, admin_key, "POST", path)
            typer.echo(f"retried {delivery_id}")
        return
    answer = _call(url, admin_key, "POST", "/api/v1/deliveries/retry", filters)
    typer.echo(f"retried {answer['retried']} of {len(answer['ids'])} matching deliveries")
    for delivery_id in answer["ids"]:
        typer.echo(f"  {delivery_id}")
