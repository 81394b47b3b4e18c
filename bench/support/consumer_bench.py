"""Helpers shared by the consumer benchmarks: synthetic plays, a private schema, the keyed-COPY floor."""

from __future__ import annotations

import io
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.csv as pacsv

from weekly_wrapped import contracts
from weekly_wrapped.streaming import sink

# Private topics and databases as the tests make them (tests/support).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.kafka import create_stream_topics, delete_topics  # noqa: E402
from tests.support.postgres import create_database, drop_database  # noqa: E402

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
        "reason_end": pa.nulls(n, pa.string()),
        "shuffle": pa.nulls(n, pa.bool_()),
        "offline": pa.nulls(n, pa.bool_()),
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
    # Timestamps as the sink writes them: without a zone, read as UTC (the fastest way Arrow's CSV has).
    final = sink.with_timestamps(plays, contracts.PLAYS)
    with conn.cursor() as cur:
        cur.execute("set time zone 'UTC'")
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


# ---- a private consumer against the running stack (its Kafka and Postgres) ----

def play_message(i: int, start_ms: int = 1_763_000_000_000, users: int = 1000, seed: str = "") -> dict:
    """The i-th synthetic play as a message (the same values as `synthetic_plays` row i)."""
    return {
        "schema_version": contracts.SCHEMA_VERSION,
        "user_id": f"bench{seed}-user-{i % users}",
        "played_at": start_ms + i * 1000,
        "track_id": f"4iV5W9uYEdYUVa79Axb7R{i % 7919:05d}",
        "context_uri": f"spotify:playlist:37i9dQZF1DXcBWIGoYBM{i % 50:02d}",
        "source": "api",
        "ms_played": None,
        "ingested_at": start_ms,
    }


@contextmanager
def private_consumer(settings, trigger_seconds: float | None = None):
    """Fresh topics, a throwaway database and a supervised consumer of their own; all removed after.

    Yields (bench settings, topics {"plays": name, ...}, dsn). The consumer is the real
    job, started by the real supervisor, with its state (checkpoint, log) in a temp folder.
    """
    import shutil
    import tempfile
    from dataclasses import replace

    from weekly_wrapped.streaming import supervisor

    suffix = uuid.uuid4().hex[:8]
    topics = create_stream_topics(settings.kafka_bootstrap, "bench.")
    database = f"wrapped_bench_{suffix}"
    create_database(settings.warehouse_dsn, database)
    state = Path(tempfile.mkdtemp(prefix="wrapped-bench-"))
    bench = replace(settings, state_dir=state, pg_database=database)
    bench.consumer.work_dir.mkdir(parents=True)
    bench.consumer.jars_dir.symlink_to(settings.consumer.jars_dir)
    extra = ("--trigger-seconds", str(trigger_seconds)) if trigger_seconds else ()
    try:
        supervisor.start(bench.consumer, topics=topics, extra_args=extra)
        yield bench, topics, bench.warehouse_dsn
    finally:
        supervisor.stop(bench.consumer)
        drop_database(settings.warehouse_dsn, database)
        delete_topics(settings.kafka_bootstrap, topics.values())
        shutil.rmtree(state, ignore_errors=True)


def committed_plays(dsn: str, conn=None) -> int:
    """New plays committed so far (cheap: sums the progress rows, not raw.plays); -1 if not yet known.
    `conn`: an open autocommit connection to ask on (else one is opened for this question)."""
    own = conn is None
    try:
        if own:
            conn = psycopg2.connect(dsn)
        with conn.cursor() as cur:
            cur.execute("select coalesce(sum(plays_rows), 0) from ops.consumer_batches")
            return int(cur.fetchone()[0])
    except psycopg2.Error:
        return -1  # Postgres out of reach, or the consumer has not applied the schema yet
    finally:
        if own and conn is not None:
            conn.close()


def wait_for_plays(dsn: str, count: int, timeout: float, interval: float = 0.05) -> float:
    """Block until `count` plays are committed; return the monotonic time it happened.

    Asks on one connection: a new one per look costs Postgres a process and both sides a SCRAM
    handshake, CPU the measured pipeline would lose (~40 connections in a 10 s window)."""
    deadline = time.monotonic() + timeout
    conn = None
    try:
        while time.monotonic() < deadline:
            if conn is None or conn.closed:
                try:
                    conn = psycopg2.connect(dsn)
                    conn.autocommit = True
                except psycopg2.OperationalError:
                    conn = None  # the database is not there yet (or restarting): ask again
            if conn is not None and committed_plays(dsn, conn) >= count:
                return time.monotonic()
            time.sleep(interval)
    finally:
        if conn is not None:
            conn.close()
    raise TimeoutError(f"only {committed_plays(dsn)} of {count} plays committed after {timeout:.0f}s")


class SteadyLoad:
    """Produce plays at a steady rate in a thread, remembering each one's partition, offset and
    Kafka timestamp (the real producer's settings, plus a delivery report per message)."""

    def __init__(self, bootstrap: str, topic: str, rate: int, seed: str):
        import threading

        from confluent_kafka import Producer

        from weekly_wrapped.ingest.producer import producer_config

        self.producer = Producer(producer_config({"bootstrap.servers": bootstrap},
                                                 **{"delivery.report.only.error": False, "linger.ms": 5}))
        self.topic, self.rate, self.seed = topic, rate, seed
        self.delivered: list[tuple[int, int, int]] = []  # (partition, offset, kafka timestamp ms)
        self.failed = 0
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _report(self, err, msg):
        if err is not None:
            self.failed += 1
        else:
            self.delivered.append((msg.partition(), msg.offset(), msg.timestamp()[1]))

    def _run(self):
        import msgspec

        encode = msgspec.json.encode
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while self.sent < due:
                message = play_message(self.sent, seed=self.seed)
                self.producer.produce(self.topic, encode(message), message["user_id"].encode(),
                                      on_delivery=self._report)
                self.sent += 1
            self.producer.poll(0.01)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.producer.flush(60)


def batch_timings(log_text: str) -> dict[str, float]:
    """Median of each of Spark's per-batch timings (ms) in a consumer log (`log_progress` lines)."""
    from statistics import median

    import re

    ours = re.compile(r" batch \d+: .* (\d+) ms \(\d+ pieces, .*first after (\d+) ms\)")
    seen: dict[str, list[int]] = {}
    for line in log_text.splitlines():
        match = ours.search(line)
        if match:  # BatchWriter's own: the whole foreachBatch call, and until Spark's first piece
            seen.setdefault("foreachBatch", []).append(int(match.group(1)))
            seen.setdefault("firstPiece", []).append(int(match.group(2)))
        if " timings (ms): " in line:
            for part in line.split(" timings (ms): ", 1)[1].split(", "):
                name, ms = part.rsplit(" ", 1)
                seen.setdefault(name, []).append(int(ms))
    return {name: median(values) for name, values in seen.items()}


def batches(dsn: str) -> list[tuple[int, dict, float]]:
    """(batch_id, end_offsets, committed_at as epoch ms) of every committed batch, in order."""
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("select batch_id, end_offsets, extract(epoch from committed_at) * 1000 "
                    "from ops.consumer_batches order by query_id, batch_id")
        rows = [(b, offsets, float(at)) for b, offsets, at in cur.fetchall()]
    conn.close()
    return rows


def commit_times(dsn: str, topic: str, delivered: list[tuple[int, int, int]]) -> list[float | None]:
    """For each delivered (partition, offset, ts), when the batch that committed it committed (epoch ms)."""
    rows = batches(dsn)
    out = []
    for partition, offset, _ in delivered:
        when = None
        for _, offsets, at in rows:
            if int(offsets.get(topic, {}).get(str(partition), 0)) > offset:
                when = at
                break
        out.append(when)
    return out
