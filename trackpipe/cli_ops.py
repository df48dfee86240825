"""``trackpipe ops status|rescale|rollback|finalize``: the operator's view of a distributed pipeline's Kafka
layout (docs/operations.md, docs/rescaling.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

ops_app = typer.Typer(
    help="Operate a distributed pipeline: its topic layout, consumer lag, partition rescaling.",
    no_args_is_help=True,
)


@ops_app.command("status")
def ops_status(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document instead of text")] = False,
) -> None:
    """Every topic with its partitions and replication, grouped by what must be co-partitioned; each
    consumer group's members and lag per partition; a verdict. Exit status: 0 ok, 1 warnings, 2 errors."""
    from trackpipe.cli import _settings
    from trackpipe.kafka_errors import exit_if_unavailable
    from trackpipe.ops.layout import Severity
    from trackpipe.ops.status import collect, render

    settings = _settings()
    with exit_if_unavailable(settings):
        report = asyncio.run(collect(settings))
    typer.echo(json.dumps(report.as_json(), indent=2) if as_json else render(report))
    raise typer.Exit({Severity.OK: 0, Severity.WARNING: 1, Severity.ERROR: 2}[report.verdict])


def _rescaler(timeout_s: float):  # -> Rescaler
    from trackpipe.cli import _settings
    from trackpipe.ops.rescale import Rescaler

    return Rescaler(_settings(), say=lambda line: typer.echo(line), timeout_s=timeout_s)


def _run(step) -> object:  # a coroutine of the rescaler: one clear line and exit 2 when it cannot go on
    from trackpipe.cli import _settings
    from trackpipe.kafka_errors import exit_if_unavailable
    from trackpipe.ops.rescale import RescaleError

    try:
        with exit_if_unavailable(_settings()):
            return asyncio.run(step)
    except RescaleError as exc:
        typer.echo(f"trackpipe ops: {exc}", err=True)
        raise typer.Exit(2) from None


TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="seconds to wait for each step (edges, drain, restart)")
]


@ops_app.command("rescale")
def ops_rescale(
    partitions: Annotated[
        int | None, typer.Option("--partitions", min=1, max=1000, help="the new partition count")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted rescale")] = False,
    timeout: TimeoutOption = 600.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the step timings as JSON at the end")
    ] = False,
) -> None:
    """Move the pipeline onto a new generation of processing topics with N partitions while the edges keep
    answering: switch the edges, drain the old generation, move its state, cut over (docs/rescaling.md).
    The old generation is kept for `ops rollback` until `ops finalize`."""
    if resume == (partitions is not None):
        typer.echo("give either --partitions N or --resume", err=True)
        raise typer.Exit(2)
    rescaler = _rescaler(timeout)
    report = _run(rescaler.resume() if resume else rescaler.rescale(int(partitions or 0)))
    if as_json:
        typer.echo(json.dumps(_report_json(report)))


@ops_app.command("rollback")
def ops_rollback(timeout: TimeoutOption = 600.0) -> None:
    """Move the pipeline back onto the previous generation (kept since the last rescale), the same way."""
    _run(_rescaler(timeout).rollback())


@ops_app.command("finalize")
def ops_finalize() -> None:
    """Delete the processing topics of every generation but the live one (no rollback after this)."""
    deleted = _run(_rescaler(60.0).finalize())
    assert isinstance(deleted, list)
    typer.echo(f"finalized: {len(deleted)} topic(s) of retired generations deleted")
    for topic in deleted:
        typer.echo(f"  {topic}")


def _report_json(report: object) -> dict[str, object]:
    from trackpipe.ops.rescale import RescaleReport

    assert isinstance(report, RescaleReport)
    return {
        "source": report.source.model_dump(),
        "target": report.target.model_dump(),
        "steps_s": report.steps_s,
        "keys_moved": report.keys_moved,
        "pause_s": report.pause_s,
    }
