"""Latency: Kafka timestamp of a play -> the commit of the batch that wrote it, under steady load.

Against the running stack's Kafka and Postgres: fresh topics, a throwaway database, the
real consumer (continuous mode, DEFAULT trigger) started by the real supervisor. Plays
are produced at --rate per second for --seconds; each play's latency is its batch's
`committed_at` (clock_timestamp() just before COMMIT) minus its Kafka timestamp.
Target: p95 <= 2 s (ratio = p95 / 2 s, target <= 1).

    .local/venv/bin/python bench/latency.py [--rate 500] [--seconds 60]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.consumer_bench import (  # noqa: E402
    SteadyLoad,
    batch_timings,
    batches,
    commit_times,
    private_consumer,
    wait_for_plays,
)
from weekly_wrapped.streaming import supervisor  # noqa: E402
from wrapped_dev.config import load_settings  # noqa: E402

TARGET_P95_S = 2.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=500, help="plays per second (default %(default)s)")
    parser.add_argument("--seconds", type=int, default=60, help="how long to produce (default %(default)s)")
    args = parser.parse_args(argv)
    settings = load_settings()
    with private_consumer(settings) as (bench, topics, dsn):
        warm = SteadyLoad(settings.kafka_bootstrap, topics["plays"], args.rate, seed="warm").start()
        time.sleep(5)
        warm.stop()
        wait_for_plays(dsn, len(warm.delivered), 180)  # the consumer is up and has compiled its batch
        skip = len(batches(dsn))

        load = SteadyLoad(settings.kafka_bootstrap, topics["plays"], args.rate, seed="load").start()
        time.sleep(args.seconds)
        load.stop()
        assert load.failed == 0, f"{load.failed} plays not acknowledged"
        wait_for_plays(dsn, len(warm.delivered) + len(load.delivered), 120)
        committed = commit_times(dsn, topics["plays"], load.delivered)
        latencies = [(at - ts) / 1000 for (_, _, ts), at in zip(load.delivered, committed)]
        rows = batches(dsn)[skip:]
        timings = batch_timings(supervisor.log_tail(bench.consumer, 100_000))
    p50, p95, worst = percentile(latencies, 50), percentile(latencies, 95), max(latencies)
    print(f"{len(latencies):,} plays at {args.rate}/s for {args.seconds}s in {len(rows)} batches "
          f"({len(latencies) / max(1, len(rows)):.0f} plays each on average)")
    print("median per batch (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    print(f"latency p50 {p50:.2f}s, p95 {p95:.2f}s, max {worst:.2f}s")
    print(f"latency: ratio={p95 / TARGET_P95_S:.2f} (target <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
