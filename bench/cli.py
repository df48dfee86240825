"""``python -m bench [--full|--smoke]``: run every stage next to its baseline, write JSON, print Markdown."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.keys import missing
from bench.profiles import PROFILES, Profile
from bench.quiet import wait_quiet
from bench.servers import Servers, machine, start_servers
from bench.table import markdown

STAGES = ("cores", "sink", "worker", "edge", "e2e", "report", "outbound", "alerts", "rescale")
# stages that need neither Kafka nor ClickHouse (alerts: unless its distributed points are run)
NO_SERVERS = frozenset({"cores", "outbound", "alerts"})
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


def _run_stage(name: str, servers: Servers | None, profile: Profile, work: Path, args: Any) -> dict[str, Any]:
    stage_dir = work / name
    stage_dir.mkdir(parents=True, exist_ok=True)
    if name == "cores":
        from bench.cores import bench_cores

        return bench_cores(profile)
    if name == "outbound":
        from bench.outbound import bench_outbound

        return bench_outbound(profile, stage_dir)
    if name == "alerts":
        from bench.alerts import bench_alerts

        return bench_alerts(servers, profile, stage_dir)
    assert servers is not None
    if name == "edge":
        from bench.edge import bench_edge

        return bench_edge(servers, profile, stage_dir, loadgen=args.loadgen)
    if name == "worker":
        from bench.worker import bench_worker

        return bench_worker(servers, profile, stage_dir)
    if name == "sink":
        from bench.sink import bench_sink

        return bench_sink(servers, profile, stage_dir)
    if name == "e2e":
        from bench.e2e import bench_e2e

        return bench_e2e(servers, profile, stage_dir)
    if name == "rescale":
        from bench.rescale import bench_rescale

        if not profile.rescale_to:
            return {"skipped": f"not in the {profile.name} profile"}
        return bench_rescale(servers, profile, stage_dir)
    if name == "report":
        from bench.reports import bench_report

        return bench_report(servers, profile)
    raise ValueError(name)


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    profile = PROFILES[args.profile]
    stages = [s for s in STAGES if s in set(args.only.split(","))] if args.only else list(STAGES)
    results: dict[str, Any] = {"profile": profile.name, "stages": stages}
    errors: dict[str, str] = {}
    servers: Servers | None = None
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="trackpipe-bench-") as tmp:
        work = Path(tmp)
        try:
            for name in stages:
                # servers start when the first stage that needs them does (the cores run alone)
                if servers is None and (
                    name not in NO_SERVERS or (name == "alerts" and profile.alerts_distributed_points)
                ):
                    log("starting servers ...")
                    servers = start_servers(args.kafka, args.clickhouse)
                    where = f"{servers.clickhouse_host}:{servers.clickhouse_port}"
                    log(f"kafka {servers.kafka}, clickhouse {where}")
                waited = wait_quiet(max_s=0.0 if profile.name == "smoke" else 60.0)
                results.setdefault("quiet_wait_s", {})[name] = waited
                t0 = time.monotonic()
                log(f"stage {name} ... (after {waited:.1f}s waiting for a quiet machine)")
                try:
                    results[name] = _run_stage(name, servers, profile, work, args)
                    for part, err in results[name].pop("errors", {}).items():
                        errors[f"{name}.{part}"] = err
                        log(f"stage {name}: {part} FAILED: {err.splitlines()[0]}")
                except Exception as exc:
                    errors[name] = f"{exc}\n{traceback.format_exc()}"
                    log(f"stage {name} FAILED: {exc}")
                log(f"stage {name} done in {time.monotonic() - t0:.1f}s")
        finally:
            if servers is not None:
                results["machine"] = machine(servers)
                servers.stop()
    if "machine" not in results:
        results["machine"] = machine(Servers("", "", 0, kafka_version="not started"))
    results["date"] = results["machine"]["date"]
    results["elapsed_s"] = time.monotonic() - began
    if errors:
        results["errors"] = errors
    elif not args.only and (absent := missing(results)):
        results["errors"] = {"keys": f"required keys missing or not numbers: {', '.join(absent)}"}
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--full", dest="profile", action="store_const", const="full", help="the full run")
    mode.add_argument(
        "--smoke", dest="profile", action="store_const", const="smoke", help="seconds, for tests"
    )
    p.set_defaults(profile="quick")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(STAGES)}")
    p.add_argument("--kafka", default=None, help="use this broker (host:port) instead of starting one")
    p.add_argument("--clickhouse", default=None, help="use this server (http://host:port) instead")
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto", help="edge load generator")
    p.add_argument(
        "--publish",
        action="store_true",
        help="write the table into docs/performance.md and the JSON to docs/bench/ (whole runs only)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    def log(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    results = run(args, log)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    table = markdown(results)
    print(table)
    print(f"\nresults: {args.out}")
    if args.publish:
        from bench.publish import PublishError, publish

        try:
            print(f"published: docs/performance.md, {publish(results, table)}")
        except PublishError as exc:
            print(f"not published: {exc}", file=sys.stderr)
            return 1
    return 1 if results.get("errors") else 0
