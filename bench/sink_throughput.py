"""Sink path (COPY into a temp table + INSERT ... ON CONFLICT, one transaction) vs plain keyed COPY.

Same 1M play rows, same machine, same run, into fresh clones of raw.plays in a
throwaway schema of the running stack's Postgres. Target: ratio >= 0.9.

    .local/venv/bin/python bench/sink_throughput.py [--rows 1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg2  # noqa: E402
import pyarrow as pa  # noqa: E402

from support.consumer_bench import fresh_tables, keyed_copy_seconds, private_schema, synthetic_plays  # noqa: E402
from weekly_wrapped import contracts  # noqa: E402
from wrapped_dev.config import load_settings  # noqa: E402
from weekly_wrapped.streaming import sink  # noqa: E402

TARGET = 0.9


def sink_seconds(dsn: str, schema: str, plays: pa.Table) -> float:
    conn = psycopg2.connect(dsn)
    sink.prepare_session(conn)
    empty_dead = pa.table({"topic": pa.array([], pa.string()), "partition": pa.array([], pa.int32()),
                           "offset": pa.array([], pa.int64()), "payload": pa.array([], pa.string()),
                           "error": pa.array([], pa.string())})
    batch = sink.ParsedBatch({contracts.PLAYS: plays}, empty_dead, plays.num_rows, {"bench": {"0": plays.num_rows}})
    started = time.monotonic()
    result = sink.write_batch(conn, "bench", 0, batch, started, raw_schema=schema, ops_schema=schema)
    elapsed = time.monotonic() - started
    conn.close()
    assert result.plays_rows == plays.num_rows, result
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the median of each is used")
    args = parser.parse_args(argv)
    settings = load_settings()
    plays = synthetic_plays(args.rows)
    copy_s, sink_s = [], []
    with private_schema(settings.warehouse_dsn) as (conn, schema):
        for _ in range(args.rounds):
            fresh_tables(conn, schema)
            copy_s.append(keyed_copy_seconds(conn, schema, plays))
            sink_s.append(sink_seconds(settings.warehouse_dsn, schema, plays))
            print(f"round: keyed COPY {copy_s[-1]:.2f}s, sink {sink_s[-1]:.2f}s")
    copy_rate = args.rows / statistics.median(copy_s)
    sink_rate = args.rows / statistics.median(sink_s)
    print(f"keyed COPY: {copy_rate:,.0f} rows/s; sink path: {sink_rate:,.0f} rows/s ({args.rows:,} rows)")
    print(f"sink_throughput: ratio={sink_rate / copy_rate:.2f} (target >= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
