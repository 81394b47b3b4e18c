"""End to end: produce N plays -> all committed in raw.plays, rows/s vs plain keyed COPY of the same rows.

Against the running stack's Kafka and Postgres, with fresh topics, a throwaway database and
the real consumer job started by the real supervisor (continuous mode, default trigger).
The clock starts when the first of the N plays is produced and stops when the last one is
committed. The consumer is warm first, as the stack's is minutes after it started: it has
run WARMUP_BATCHES micro-batches (the JVM keeps compiling Spark's planner and the parse for
about a hundred of them: C2's compile threads took 6 of the 17 CPU seconds of 1M plays
after a single warm-up batch) and one big batch of WARMUP plays.

ROUNDS rounds, each end-to-end window between two keyed COPYs of N plays (the floor), and each
round's ratio against the mean of the two COPYs beside it: this machine's speed drifts within
minutes (one busy loop took 0.62 s, a minute later 0.93 s), and a floor measured minutes away
from its window compared two different machines. The ratio printed is the median of the
rounds'. While a COPY runs, the consumer is idle (its Spark session polls an empty topic).
Target: ratio >= 0.5.

    .local/venv/bin/python bench/e2e_throughput.py [--plays 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.consumer_bench import (  # noqa: E402
    fresh_tables,
    keyed_copy_seconds,
    play_message,
    private_consumer,
    private_schema,
    synthetic_plays,
    wait_for_plays,
)
from weekly_wrapped import contracts
from weekly_wrapped.streaming import supervisor  # noqa: E402
from wrapped_dev.config import load_settings  # noqa: E402
from weekly_wrapped.ingest.producer import StreamProducer  # noqa: E402
from tests.support.postgres import sql  # noqa: E402 (support.consumer_bench put the repository on sys.path)

TARGET = 0.5
# The stack's consumer runs for days: measure it warm (JIT-compiled), as it is after its first minutes.
WARMUP_BATCHES = 100
WARMUP = 200_000
ROUNDS = 3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plays", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="end-to-end windows, each between two floors")
    args = parser.parse_args(argv)
    settings = load_settings()
    n = args.plays
    with private_consumer(settings) as (bench, topics, dsn):
        producer = StreamProducer({"bootstrap.servers": settings.kafka_bootstrap},
                                  topics={contracts.PLAYS_TOPIC: topics["plays"]})
        # Warm-up: the consumer's Spark session is up and its batches are compiled. One small
        # batch at a time, each waited for, so that each is a micro-batch of its own.
        step = WARMUP // 2 // WARMUP_BATCHES
        for i in range(WARMUP // 2):
            producer.send(contracts.PLAYS_TOPIC, play_message(i, seed="w"), validated=True)
            if (i + 1) % step == 0:
                producer.flush()
                wait_for_plays(dsn, i + 1, 600)  # the first: Spark start-up, on a busy machine
        for i in range(WARMUP // 2, WARMUP):
            producer.send(contracts.PLAYS_TOPIC, play_message(i, seed="w"), validated=True)
        producer.flush()
        wait_for_plays(dsn, WARMUP, 600)
        print(f"warm: {WARMUP_BATCHES} micro-batches of {step:,} plays, then {WARMUP // 2:,} plays")

        plays = synthetic_plays(n)
        rounds = []
        with private_schema(settings.warehouse_dsn) as (conn, schema):
            floors = [floor_seconds(conn, schema, plays)]
            for r in range(args.rounds):
                # Each round from an empty raw.plays, as its floor's COPY: into a growing table
                # the rounds took longer and longer (10.8, 11.7, 12.9 s).
                sql(dsn, "truncate raw.plays")  # the consumer is idle: everything produced is committed
                e2e_s = end_to_end_seconds(producer, dsn, first=r * n, n=n, committed_before=WARMUP + r * n)
                floors.append(floor_seconds(conn, schema, plays))
                copy_s = (floors[-2] + floors[-1]) / 2
                rounds.append(copy_s / e2e_s)
                print(f"round {r + 1}: end to end {n / e2e_s:,.0f} plays/s ({e2e_s:.1f} s); keyed COPY before and "
                      f"after {n / floors[-2]:,.0f} and {n / floors[-1]:,.0f} rows/s; ratio {rounds[-1]:.2f}")
        report_batches(bench, dsn)

    ratio = statistics.median(rounds)
    print("round ratios: " + ", ".join(f"{x:.2f}" for x in rounds) + f"; median {ratio:.2f}")
    print(f"e2e_throughput: ratio={ratio:.2f} (target >= {TARGET})")
    return 0


def end_to_end_seconds(producer: StreamProducer, dsn: str, first: int, n: int, committed_before: int) -> float:
    """Produce plays first .. first+n-1 (new natural keys), wait until all are committed: seconds."""
    messages = [play_message(i) for i in range(first, first + n)]
    started = time.monotonic()
    for message in messages:
        producer.send(contracts.PLAYS_TOPIC, message, validated=True)
    producer.flush(300)
    produced = time.monotonic()
    finished = wait_for_plays(dsn, committed_before + n, 900)
    print(f"produced {n:,} plays in {produced - started:.1f}s; all committed after {finished - started:.1f}s")
    return finished - started


def floor_seconds(conn, schema: str, plays) -> float:
    """One keyed COPY of the plays into fresh tables (a checkpoint beside it can slow it: hence the rounds)."""
    fresh_tables(conn, schema)
    return keyed_copy_seconds(conn, schema, plays)


def report_batches(bench, dsn: str) -> None:
    [(batches, slowest, avg_rows)] = sql(
        dsn, "select count(*), max(duration_ms), round(avg(input_rows)) from ops.consumer_batches")
    print(f"{batches} batches, {avg_rows} messages each on average, slowest {slowest} ms")
    for line in supervisor.log_tail(bench.consumer, 20).splitlines():
        if " batch " in line:  # the last batches: the measured ones
            print("  " + line.split(": ", 1)[-1])


if __name__ == "__main__":
    sys.exit(main())
