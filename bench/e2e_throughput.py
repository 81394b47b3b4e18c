"""End to end: produce N plays -> all committed in raw.plays, rows/s vs plain keyed COPY of the same rows.

Against the running stack's Kafka and Postgres, with fresh topics, a throwaway database and
the real consumer job started by the real supervisor (continuous mode, default trigger).
The clock starts when the first of the N plays is produced and stops when the last one is
committed. The consumer is warm first, as the stack's is minutes after it started: it has
run WARMUP_BATCHES micro-batches (the JVM keeps compiling Spark's planner and the parse for
about a hundred of them: C2's compile threads took 6 of the 17 CPU seconds of 1M plays
after a single warm-up batch) and one big batch of WARMUP plays.
Target: ratio >= 0.5.

    .local/venv/bin/python bench/e2e_throughput.py [--plays 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg2  # noqa: E402

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

TARGET = 0.5
# The stack's consumer runs for days: measure it warm (JIT-compiled), as it is after its first minutes.
WARMUP_BATCHES = 100
WARMUP = 200_000
FLOOR_ROUNDS = 3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plays", type=int, default=1_000_000)
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

        messages = [play_message(i) for i in range(n)]
        started = time.monotonic()
        for message in messages:
            producer.send(contracts.PLAYS_TOPIC, message, validated=True)
        producer.flush(300)
        produced = time.monotonic()
        finished = wait_for_plays(dsn, WARMUP + n, 900)
        e2e_s = finished - started
        print(f"produced {n:,} plays in {produced - started:.1f}s; all committed after {e2e_s:.1f}s")
        conn = psycopg2.connect(dsn)
        with conn.cursor() as cur:
            cur.execute("select count(*), max(duration_ms), round(avg(input_rows)) from ops.consumer_batches")
            batches, slowest, avg_rows = cur.fetchone()
        conn.close()
        print(f"{batches} batches, {avg_rows} messages each on average, slowest {slowest} ms")
        for line in supervisor.log_tail(bench.consumer, 40).splitlines():
            if " batch " in line:  # the last batches: the measured ones
                print("  " + line.split(": ", 1)[-1])

    # The floor is the median of FLOOR_ROUNDS COPYs: a single one swung from 125k to 245k rows/s on
    # this machine, with whether a checkpoint (forced by the dropped database, or by WAL volume) ran
    # beside it. The median is mostly a COPY without one: the faster floor, the harder target.
    copies = []
    plays = synthetic_plays(n)
    with private_schema(settings.warehouse_dsn) as (conn, schema):
        for _ in range(FLOOR_ROUNDS):
            fresh_tables(conn, schema)
            copies.append(keyed_copy_seconds(conn, schema, plays))
    copy_s = statistics.median(copies)
    print("keyed COPY rounds: " + ", ".join(f"{n / s:,.0f}" for s in copies) + " rows/s")
    e2e_rate, copy_rate = n / e2e_s, n / copy_s
    print(f"end to end: {e2e_rate:,.0f} plays/s; keyed COPY of the same rows: {copy_rate:,.0f} rows/s")
    print(f"e2e_throughput: ratio={e2e_rate / copy_rate:.2f} (target >= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
