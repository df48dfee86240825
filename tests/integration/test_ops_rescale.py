"""``trackpipe ops rescale`` on the real broker (issue 15): under a steady load through an edge, with two
workers, the pipeline grows 4 -> 8 partitions, is finalized, then shrinks 8 -> 2. Every request is
answered 2xx (or the click's 302); ``ops status`` shows the rescale's phases while it runs and a clean
layout after; and the final conversions, revenue, attribution credits and sessions in ClickHouse equal
a clean single-layout run of the same events — the pure processing cores over every event the edge
accepted, read back from each generation's events topic in order — so nothing was lost, nothing was
counted twice, and each visitor's events were processed in order."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import pytest

from schemas.events import Event
from tests.integration.test_outbound_embedded import wait_for
from tests.rescale_pipeline import Pipeline, assert_exact, events_of, phases, pipeline_env, status
from tests.scenario import cli

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)  # two rescales under load: about 75 s on an idle 2-core machine
def test_grow_4_to_8_then_shrink_to_2_under_load_equals_a_clean_run(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
):
    env = pipeline_env(kafka_bootstrap, clickhouse_server, ch_database, unique_name, 4)
    events_topic = env["TRACKPIPE_KAFKA_TOPIC"]
    pipe = Pipeline(tmp_path, env, clickhouse_server)
    try:
        pipe.start()
        load = pipe.start_load()
        workers = pipe.workers

        accepted: list[Event] = []
        previous = 4
        for step, partitions in enumerate((8, 2), start=1):
            new_events = f"{events_topic}.g{step}"
            old_events = events_topic if step == 1 else f"{events_topic}.g{step - 1}"
            args = ["ops", "rescale", "--partitions", str(partitions), "--json", "--timeout", "300"]
            if step == 1:
                # ops status during a rescale, deterministically: the old generation's workers are
                # paused, so the rescale waits in its drain until they go on
                for w in workers:
                    w.p.send_signal(signal.SIGSTOP)
                rescale = subprocess.Popen(
                    [sys.executable, "-m", "trackpipe.cli", *args],
                    env={**os.environ, **env},
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                try:
                    during = wait_for(
                        "the rescale draining",
                        lambda: (r := status(env, tmp_path))["layout"]["phase"] == "draining" and r,
                        120,
                    )
                finally:
                    for w in workers:
                        w.p.send_signal(signal.SIGCONT)
                stdout, _ = rescale.communicate(timeout=600)
                out = subprocess.CompletedProcess(rescale.args, rescale.returncode, stdout, "")
                lay = during["layout"]
                assert lay["current"] == {"generation": 0, "partitions": 4}, lay
                assert lay["target"] == {"generation": 1, "partitions": 8}, lay
                assert set(lay["fence"]) == {"0", "1", "2", "3"}
                topics = {t["topic"]: t["partitions"] for t in during["topics"]}
                assert topics[old_events] == 4 and topics[new_events] == 8
                old_group = next(g for g in during["groups"] if g["role"] == "processing g0 (current)")
                assert sum(p["lag"] for p in old_group["partitions"] if p["topic"] == old_events) > 0
                assert any("rescale is in progress" in p["what"] for p in during["problems"])
            else:
                out = cli(args, env, tmp_path, timeout=600)
            assert out.returncode == 0, out.stdout + out.stderr
            report = json.loads(out.stdout.strip().splitlines()[-1])
            assert report["target"] == {"generation": step, "partitions": partitions}
            assert report["pause_s"] > 0 and set(report["keys_moved"]) == {
                "visitor", "click", "fingerprint", "conversion"}  # fmt: skip
            # the layout went through the protocol's phases, in order
            seen = phases(kafka_bootstrap, f"{events_topic}.layout")
            assert seen[-5:] == ["stable", "switching", "draining", "moving", "stable"], seen
            # ... and after: the new generation live, the old one kept, processing caught up
            after = status(env, tmp_path)
            assert after["layout"]["current"] == {"generation": step, "partitions": partitions}
            assert after["layout"]["previous"]["generation"] == step - 1
            assert after["layout"]["phase"] == "stable"
            assert [p for p in after["problems"] if p["severity"] == "error"] == []
            group = next(g for g in after["groups"] if g["role"] == f"processing g{step} (current)")
            assert group["members"], group
            assert {p["topic"] for p in group["partitions"]} >= {new_events}
            assert len([p for p in group["partitions"] if p["topic"] == new_events]) == partitions
            # the retired generation's events are final: keep them for the clean run, then finalize
            accepted += asyncio.run(events_of(kafka_bootstrap, old_events, previous))
            previous = partitions
            fin = cli(["ops", "finalize"], env, tmp_path)
            assert fin.returncode == 0 and old_events in fin.stdout, fin.stdout + fin.stderr

        load.stop()
        assert load.failures == [], load.failures[:10]
        assert load.requests > 200
        for proc in pipe.procs():
            assert proc.p.poll() is None, proc.tail()
        assert_exact(kafka_bootstrap, pipe.backend, accepted, [(f"{events_topic}.g2", 2)])
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pipe.logs()}") from None
    finally:
        pipe.stop()
