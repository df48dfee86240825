"""How big each stage's run is: ``quick`` (default, ~5 minutes), ``full`` and ``smoke`` (seconds, tests)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    # edge: closed-loop load per run, at each concurrency of a sweep (edge/bare x single/batch), then
    # open-loop runs at 50% of our best rate over a pool of at most edge_open_loop_connections
    edge_warmup_s: float
    edge_duration_s: float
    edge_max_requests: int
    edge_sweep: tuple[int, ...]
    edge_batch_sweep: tuple[int, ...]
    # processors
    cores_events: int
    worker_events: int
    events_per_record: int
    # sink
    sink_events: int
    sink_batch_events: int
    # end to end
    e2e_duration_s: float
    e2e_requests_per_s: float  # background stream (1-5 events per request)
    e2e_probes_per_s: float
    e2e_distributed: bool
    # reports
    report_sizes: tuple[int, ...]
    report_repeats: int
    # outbound goal webhooks (embedded): conversions per second for a duration, spread over hosts, and
    # the receiver down for a while (the load is sent while it is down)
    outbound_rate_per_s: float = 500.0
    outbound_duration_s: float = 4.0
    outbound_one_host_s: float = 2.0  # one receiver host drains at the sender's per-host rate: keep it short
    outbound_hosts: int = 16
    outbound_down_s: float = 5.0
    # alert rules (embedded): firing latency over episodes of probe rules ("lanes", in rotation) in a few
    # projects; then capacity points (rules per project, projects), cumulative, under a background load
    alerts_lanes: int = 8
    alerts_episodes: int = 8
    alerts_projects: int = 1
    alerts_capacity_points: tuple[tuple[int, int], ...] = ((10, 10), (50, 20), (100, 50))
    alerts_capacity_episodes: int = 8
    alerts_load_per_s: float = 100.0
    # the same through Kafka + one ``trackpipe worker`` (empty: not run); capacity points as above
    alerts_distributed_points: tuple[tuple[int, int], ...] = ((10, 10), (50, 20))
    # rescale (distributed): 4 -> rescale_to partitions under an open-loop load (0 partitions: not run)
    rescale_to: int = 8
    rescale_rate_per_s: float = 100.0
    rescale_settle_s: float = 5.0
    edge_open_loop_connections: int = 256
    # embedded edge latency with a backlog in its log (e2e stage): events preloaded, open-loop 1-event
    # requests per second and the measuring window (once while the backlog drains, once after)
    e2e_backlog_events: int = 100_000
    e2e_backlog_rate_per_s: float = 200.0
    e2e_backlog_window_s: float = 5.0


QUICK = Profile(
    name="quick",
    edge_warmup_s=1.0,
    edge_duration_s=3.0,
    edge_max_requests=500_000,
    edge_sweep=(64, 256, 1024),
    edge_batch_sweep=(16, 64, 256, 1024),
    cores_events=20_000,
    worker_events=60_000,
    events_per_record=100,
    sink_events=20_000,
    sink_batch_events=10_000,
    e2e_duration_s=8.0,
    e2e_requests_per_s=200.0,
    e2e_probes_per_s=10.0,
    e2e_distributed=True,
    report_sizes=(1_000_000,),
    report_repeats=11,
)

FULL = Profile(
    name="full",
    edge_warmup_s=2.0,
    edge_duration_s=10.0,
    edge_max_requests=2_000_000,
    edge_sweep=(64, 256, 1024),
    edge_batch_sweep=(16, 64, 256, 1024),
    cores_events=100_000,
    worker_events=1_000_000,  # worker.peak_rss_mb at 1M events (issue 16 item 2)
    events_per_record=100,
    sink_events=100_000,
    sink_batch_events=10_000,
    e2e_duration_s=30.0,
    e2e_requests_per_s=200.0,
    e2e_probes_per_s=10.0,
    e2e_distributed=True,
    report_sizes=(1_000_000, 10_000_000),
    report_repeats=25,
    outbound_duration_s=20.0,
    outbound_one_host_s=10.0,
    outbound_down_s=60.0,
    alerts_lanes=10,
    alerts_episodes=40,
    alerts_projects=3,
    alerts_capacity_points=((10, 10), (50, 20), (100, 50), (200, 100), (500, 100), (1000, 100)),
    alerts_capacity_episodes=20,
    alerts_load_per_s=200.0,
    alerts_distributed_points=((10, 10), (50, 20), (100, 50), (200, 100), (500, 100)),
    rescale_rate_per_s=300.0,
    rescale_settle_s=15.0,
    e2e_backlog_events=300_000,
    e2e_backlog_window_s=15.0,
)

SMOKE = Profile(
    name="smoke",
    edge_warmup_s=0.2,
    edge_duration_s=0.5,
    edge_max_requests=300,
    edge_sweep=(8,),
    edge_batch_sweep=(4,),
    cores_events=300,
    worker_events=300,
    events_per_record=50,
    sink_events=300,
    sink_batch_events=150,
    e2e_duration_s=2.0,
    e2e_requests_per_s=20.0,
    e2e_probes_per_s=5.0,
    e2e_distributed=False,
    report_sizes=(10_000,),
    report_repeats=3,
    outbound_rate_per_s=100.0,
    outbound_duration_s=1.0,
    outbound_one_host_s=1.0,
    outbound_hosts=4,
    outbound_down_s=2.0,
    alerts_lanes=2,
    alerts_episodes=2,
    alerts_capacity_points=((2, 2),),
    alerts_capacity_episodes=2,
    alerts_load_per_s=20.0,
    alerts_distributed_points=(),
    rescale_to=0,
    edge_open_loop_connections=8,
    e2e_backlog_events=2_000,
    e2e_backlog_rate_per_s=20.0,
    e2e_backlog_window_s=1.0,
)

PROFILES = {p.name: p for p in (QUICK, FULL, SMOKE)}
