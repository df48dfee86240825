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
