"""Helpers shared by the consumer benchmarks: synthetic plays, a private schema, the keyed-COPY floor."""

from __future__ import annotations

import io
import time
import uuid
from contextlib import contextmanager

import psycopg2
import pyarrow as pa
import pyarrow.csv as pacsv

from weekly_wrapped import contracts
from weekly_wrapped.streaming import sink

PLAYS_COLUMNS = [c for c, _ in sink.stage_columns(contracts.PLAYS)]


def synthetic_plays(n: int, start_ms: int = 1_763_000_000_000, users: int = 1000, seed: str = "") -> pa.Table:
    """n distinct plays (as the stage table wants them), shaped like real ones."""
    ids = range(n)
    return pa.table({
        "user_id": pa.array([f"bench{seed}-user-{i % users}" for i in ids]),
        "played_at": pa.array([start_ms + i * 1000 for i in ids], pa.int64()),
        "track_id": pa.array([f"4iV5W9uYEdYUVa79Axb7R{i % 7919:05d}" for i in ids]),
        "context_uri": pa.array([f"spotify:playlist:37i9dQZF1DXcBWIGoYBM{i % 50:02d}" for i in ids]),
        "source": pa.array(["api"] * n),
        "ms_played": pa.nulls(n, pa.int64()),
        "ingested_at": pa.array([start_ms + n * 1000] * n, pa.int64()),
        "kafka_partition": pa.array([i % 3 for i in ids], pa.int32()),
        "kafka_offset": pa.array([i // 3 for i in ids], pa.int64()),
    })


@contextmanager
def private_schema(dsn: str):
    """A throwaway schema with clones of raw.plays and the ops tables; dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"create schema {name}")
    try:
        yield conn, name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"drop schema {name} cascade")
        conn.close()


def fresh_tables(conn, schema: str) -> None:
    with conn.cursor() as cur:
        for table, source in (("plays", "raw.plays"), ("plays_copy", "raw.plays"),
                              ("consumer_batches", "ops.consumer_batches"), ("dead_letters", "ops.dead_letters")):
            cur.execute(f"drop table if exists {schema}.{table}")
            cur.execute(f"create table {schema}.{table} (like {source} including all)")


def keyed_copy_seconds(conn, schema: str, plays: pa.Table) -> float:
    """The write floor: plain COPY of the same rows into a table with raw.plays' columns and key."""
    final = plays.set_column(1, "played_at", plays["played_at"].cast(pa.timestamp("ms", tz="UTC")))
    final = final.set_column(6, "ingested_at", final["ingested_at"].cast(pa.timestamp("ms", tz="UTC")))
    started = time.monotonic()
    buf = io.BytesIO()
    pacsv.write_csv(final, buf, pacsv.WriteOptions(include_header=False, batch_size=65536))
    buf.seek(0)
    old_autocommit = conn.autocommit
    conn.autocommit = False
    with conn.cursor() as cur:
        cols = ", ".join(PLAYS_COLUMNS)
        cur.copy_expert(f"copy {schema}.plays_copy ({cols}) from stdin with (format csv)", buf, size=1 << 20)
    conn.commit()
    conn.autocommit = old_autocommit
    return time.monotonic() - started
