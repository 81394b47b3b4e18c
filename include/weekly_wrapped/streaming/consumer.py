"""The `foreachBatch` function of the streaming consumer: parse a Kafka batch, write it to Postgres.

Glue between the pure `parse` functions and the `sink`. Runs in the Spark driver
(in the job's Python process), so it keeps one psycopg2 connection for the life of
the query and reconnects when Postgres went away (restart, failover): the parsed
batch is still in memory, so the write is simply retried.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import psycopg2

from weekly_wrapped import contracts, db
from weekly_wrapped.streaming import parse, sink

log = logging.getLogger("weekly_wrapped.consumer")

QUERY_NAME = "wrapped_consumer"

# How long a batch waits for Postgres to come back before the query gives up (and the
# supervisor restarts the job from its checkpoint).
RECONNECT_SECONDS = 180


def topics_for(override: Mapping[str, str] | None = None) -> dict[str, contracts.Stream]:
    """Kafka topic name -> stream. `override` maps table names (plays, tracks, ...) to topic names
    and then replaces the default set entirely (tests consume only their own, unique topics)."""
    if not override:
        return dict(contracts.STREAMS)
    by_table = {sink.table_name(s): s for s in contracts.STREAMS.values()}
    unknown = set(override) - set(by_table)
    if unknown:
        raise ValueError(f"unknown stream(s) {sorted(unknown)}; use {sorted(by_table)}")
    return {topic: by_table[table] for table, topic in override.items()}


class Chunks:
    """The pieces of one batch, read once from Spark and kept, so that a retried write sees them all."""

    def __init__(self, source: Iterable[sink.ParsedBatch]):
        self.source = iter(source)
        self.seen: list[sink.ParsedBatch] = []
        self.first_at: float | None = None

    def __iter__(self) -> Iterator[sink.ParsedBatch]:
        yield from list(self.seen)
        for chunk in self.source:
            if self.first_at is None:
                self.first_at = time.monotonic()
            self.seen.append(chunk)
            yield chunk

    def first_ms(self, started: float) -> int:
        return int(((self.first_at or started) - started) * 1000)


def arrow_tables(df) -> Iterator:
    """The result of `df` as Arrow tables, each as soon as Spark has computed it (one per partition).

    `df.toArrow()` returns only when the whole job is done. PySpark's own collect stream
    (what toArrow reads, an internal API of the pinned PySpark) hands over each partition's
    Arrow batches when its task finishes, in completion order: the sink does not depend on
    order. Spark Connect has no such stream; there the whole table comes at once.
    """
    import pyarrow as pa

    if not hasattr(df, "_jdf"):
        yield df.toArrow()
        return
    from pyspark.errors.exceptions.captured import unwrap_spark_exception
    from pyspark.sql.pandas.serializers import ArrowCollectSerializer
    from pyspark.traceback_utils import SCCallSiteSync
    from pyspark.util import _load_from_socket

    with SCCallSiteSync(df.sparkSession.sparkContext):
        port, secret, server = df._jdf.collectAsArrowToPython()
    try:
        with _load_from_socket((port, secret), ArrowCollectSerializer()) as stream:
            for batch in stream:
                if isinstance(batch, pa.RecordBatch):  # the stream ends with the batches' order
                    yield pa.Table.from_batches([batch])
    finally:
        with unwrap_spark_exception():
            server.getResult()  # raises what went wrong in the JVM


class BatchWriter:
    """`query.foreachBatch(BatchWriter(dsn, topics))`: one transaction per micro-batch."""

    def __init__(self, dsn: str, topics: Mapping[str, contracts.Stream], checkpoint: str):
        self.dsn = dsn
        self.topics = dict(topics)
        self.checkpoint = checkpoint
        self.conn = None
        self.query_id: str | None = None
        # Crash tests: "before_commit:<batch id>" kills this process group after the batch's
        # COPY and upserts, just before COMMIT (a kill -9 at the worst moment).
        self.failpoint = os.environ.get("WRAPPED_CONSUMER_FAILPOINT", "")

    def _connect(self):
        if self.conn is None or self.conn.closed:
            self.conn = db.connect(self.dsn)
            sink.prepare_session(self.conn)
        return self.conn

    def _query_id(self) -> str:
        # The query's id is stable across restarts from the same checkpoint (runId is not),
        # which is what makes (query_id, batch_id) a safe idempotency key. Spark writes it
        # to the checkpoint before the first batch.
        if self.query_id is None:
            self.query_id = checkpoint_query_id(self.checkpoint)
        if self.query_id is None:
            raise RuntimeError(f"no query id in {self.checkpoint}/metadata")
        return self.query_id

    def __call__(self, df, batch_id: int) -> None:
        """`df`: the micro-batch already shaped by `parse.for_sink(parse.check_batch(...))`.

        The parsing is part of the streaming query's plan (built once, not per batch: building
        that DataFrame from Python costs ~1 s), so a batch is one Spark job. Its result comes to
        the driver as Arrow, a partition at a time, and each piece goes to Postgres as it
        arrives: the COPY and upsert of the first pieces run while Spark parses the rest.
        """
        started = time.monotonic()
        query_id = self._query_id()
        chunks = Chunks(split_arrow(pa_table, self.topics) for pa_table in arrow_tables(df))
        result = self.write(query_id, batch_id, chunks, started)
        log.info(
            "batch %d: %d messages, %d new plays, %d dead letters, %d ms "
            "(%d pieces, %d of plays copied straight in, first after %d ms)%s",
            batch_id, result.input_rows, result.plays_rows, result.dead_letters, result.duration_ms,
            len(chunks.seen), result.copied_pieces, chunks.first_ms(started), " (already committed, skipped)" if result.skipped else "",
        )

    def write(self, query_id: str, batch_id: int, chunks: Chunks, started: float) -> sink.BatchResult:
        """Write the batch; if Postgres is unreachable, reconnect and retry until RECONNECT_SECONDS."""
        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            try:
                return sink.write_chunks(self._connect(), query_id, batch_id, chunks, started,
                                         before_commit=self._failpoint(batch_id))
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                self.close()
                if time.monotonic() > deadline:
                    raise
                log.warning("batch %d: Postgres unavailable (%s); retrying", batch_id, str(exc).strip())
                time.sleep(2)

    def _failpoint(self, batch_id: int):
        if self.failpoint != f"before_commit:{batch_id}":
            return None

        def crash():
            log.warning("failpoint before_commit:%d: SIGKILL to the process group", batch_id)
            os.killpg(os.getpgid(0), signal.SIGKILL)

        return crash

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg2.Error:
                pass
            self.conn = None


def split_arrow(table, topics: Mapping[str, contracts.Stream]) -> sink.ParsedBatch:
    """`parse.for_sink`'s Arrow table -> the sink's per-stream tables, dead letters and end offsets."""
    import pyarrow as pa
    import pyarrow.compute as pc

    valid = pc.is_null(table["error"])
    rows = {}
    for topic, stream in topics.items():
        mine = table.filter(pc.and_(valid, pc.equal(table["kafka_topic"], topic)))
        if mine.num_rows:
            fields = mine[parse.stream_column(stream)].combine_chunks().flatten()
            rows[stream] = pa.Table.from_arrays(
                [*fields, mine["kafka_partition"], mine["kafka_offset"]],
                names=[c for c, _ in sink.stage_columns(stream)],
            )
    dead = table.filter(pc.invert(valid)).select(["kafka_topic", "kafka_partition", "kafka_offset", "payload", "error"])
    dead = dead.rename_columns(["topic", "partition", "offset", "payload", "error"])
    offsets: dict[str, dict[str, int]] = {}
    ends = table.group_by(["kafka_topic", "kafka_partition"]).aggregate([("kafka_offset", "max")])
    for topic, partition, last in zip(*(ends[c].to_pylist() for c in ("kafka_topic", "kafka_partition", "kafka_offset_max"))):
        offsets.setdefault(topic, {})[str(partition)] = last + 1
    return sink.ParsedBatch(rows, dead, table.num_rows, offsets)


def checkpoint_query_id(checkpoint: str | Path) -> str | None:
    """The streaming query id stored in a (local) checkpoint folder, or None if there is none yet."""
    path = Path(str(checkpoint).removeprefix("file:")) / "metadata"
    try:
        return json.loads(path.read_text().splitlines()[0])["id"]
    except (FileNotFoundError, IndexError, KeyError, ValueError):
        return None
