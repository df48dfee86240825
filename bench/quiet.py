"""Waiting for the machine to go quiet before a stage is measured.

Kafka's JVM and ClickHouse are busy for a while after they start (class loading, JIT, system tables), and a
stage can leave work behind (ClickHouse merging the parts of millions of rows). On a 2-core machine that
work lands in the next stage's figures: the first full run measured the cores, its first stage, at 18.7k
events per core-second with the servers starting beside it, against 34-38k alone. Each stage now starts
once the machine's CPUs were at most ``busy_share`` busy over a window (``/proc/stat``), or after
``max_s``; the seconds waited are recorded with the results.
"""

from __future__ import annotations

import time
from pathlib import Path

STAT = Path("/proc/stat")


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot; busy excludes idle and iowait."""
    fields = [int(x) for x in STAT.read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest time is inside user)
    return total - fields[3] - fields[4], total


def wait_quiet(max_s: float = 60.0, busy_share: float = 0.25, window_s: float = 1.0) -> float:
    """Wait until a window of ``window_s`` with the CPUs at most ``busy_share`` busy (or ``max_s``);
    returns the seconds waited."""
    began = time.monotonic()
    busy0, total0 = cpu_times()
    while time.monotonic() - began < max_s:
        time.sleep(window_s)  # the measuring window itself, not a stand-in for a condition
        busy1, total1 = cpu_times()
        if total1 > total0 and (busy1 - busy0) / (total1 - total0) <= busy_share:
            break
        busy0, total0 = busy1, total1
    return time.monotonic() - began
