"""Write one parsed micro-batch to Postgres in ONE transaction: raw rows, dead letters, progress.

Per table: COPY (CSV, from Arrow) into a temporary table, then `INSERT ... SELECT ...
ON CONFLICT` on the natural key. Plays never change, so a replayed play is simply
skipped; tracks/albums/artists keep the version with the newest `fetched_at` and
never move backwards. New plays, the common case, skip the temporary table: a batch's
plays are first COPied straight into raw.plays (one COPY, inside a savepoint), which costs
Postgres about half; if any of them is already there (a replay, a duplicate, an export
overlapping the API), the key refuses the COPY, the savepoint is rolled back and the
batch's plays take the upsert. Dead letters and the `ops.consumer_batches` progress row go
into the same transaction, so a batch is either entirely in Postgres or not at all.

Idempotent per (query_id, batch_id): Spark re-runs the last batch after a crash
(same batch id, same offsets); if its progress row is already there the batch was
committed before the crash and is skipped.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping

import psycopg2
from psycopg2 import errors as pg_errors

from weekly_wrapped import contracts

# Arrow is imported lazily by the functions that need it, so that importing the
# module (e.g. for its SQL, in tests) stays cheap.

PLAY_KEY = ("user_id", "played_at", "track_id")

# Columns the temporary (stage) tables get per contract type; timestamps and arrays
# travel as epoch ms and JSON text, and become timestamptz / text[] in the INSERT.
_STAGE_TYPES = {
    "string": "text",
    "long": "bigint",
    "int": "integer",
    "boolean": "boolean",
    "string_array": "text",
    "timestamp_ms": "bigint",
}
KAFKA_COLUMNS = (("kafka_partition", "integer"), ("kafka_offset", "bigint"))


def table_name(stream: contracts.Stream) -> str:
    """`spotify.plays` -> `plays` (the raw table of a stream)."""
    return stream.topic.rsplit(".", 1)[-1]


def natural_key(stream: contracts.Stream) -> tuple[str, ...]:
    return PLAY_KEY if stream.topic == contracts.PLAYS_TOPIC else (stream.key,)


def stage_columns(stream: contracts.Stream) -> list[tuple[str, str]]:
    """(name, type) of the stage table: the contract's fields, then the Kafka position."""
    return [(f.name, _STAGE_TYPES[f.type]) for f in stream.fields] + list(KAFKA_COLUMNS)


def _target_expr(f: contracts.Field) -> str:
    if f.type == "timestamp_ms":
        # Exact: integer milliseconds as an interval, no floating point seconds.
        return f"timestamptz 'epoch' + {f.name} * interval '1 millisecond'"
    if f.type == "string_array":
        return (f"case when {f.name} is null then null "
                f"else array(select jsonb_array_elements_text({f.name}::jsonb)) end")
    return f.name


def create_stage_sql(stream: contracts.Stream) -> str:
    columns = ", ".join(f"{name} {kind}" for name, kind in stage_columns(stream))
    # ON COMMIT DELETE ROWS: the table lives as long as the connection, its rows one transaction.
    return f"create temp table if not exists stage_{table_name(stream)} ({columns}) on commit delete rows"


# A play of someone who deleted their data (app.deleted_users) after it was produced is not
# loaded. The first test runs once per statement, so without deletions no row is hashed.
NOT_DELETED = (
    "(not exists (select 1 from app.deleted_users) or not exists (select 1 from app.deleted_users d "
    "where d.user_id_sha256 = encode(sha256(convert_to(user_id, 'UTF8')), 'hex')))"
)


def upsert_sql(stream: contracts.Stream, schema: str = "raw") -> str:
    """INSERT ... SELECT from the stage table into `<schema>.<table>`, idempotent on the natural key."""
    table = f"{schema}.{table_name(stream)}"
    stage = f"stage_{table_name(stream)}"
    key = natural_key(stream)
    has_kafka = stream.topic == contracts.PLAYS_TOPIC  # only raw.plays keeps the Kafka position
    columns = list(stream.field_names) + (["kafka_partition", "kafka_offset"] if has_kafka else [])
    select = [_target_expr(f) for f in stream.fields] + (["kafka_partition", "kafka_offset"] if has_kafka else [])
    if "fetched_at" not in stream.field_names:
        # Facts (plays): the same key is the same play; keep the first copy. Sorting by the
        # key makes the index inserts sequential, which keeps the upsert near COPY speed.
        return (
            f"insert into {table} ({', '.join(columns)}) "
            f"select {', '.join(select)} from {stage} where {NOT_DELETED} order by {', '.join(key)} "
            f"on conflict ({', '.join(key)}) do nothing"
        )
    # Entities: one row per key from this batch (the newest; on a tie the first produced),
    # and an existing row is replaced only by a strictly newer one: never backwards.
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (
        f"insert into {table} ({', '.join(columns)}) "
        f"select distinct on ({', '.join(key)}) {', '.join(select)} from {stage} "
        f"order by {', '.join(key)}, fetched_at desc, kafka_partition, kafka_offset "
        f"on conflict ({', '.join(key)}) do update set {updates}, loaded_at = now() "
        f"where {table}.fetched_at < excluded.fetched_at"
    )


DEAD_LETTER_STAGE_SQL = (
    'create temp table if not exists stage_dead_letters (topic text, "partition" integer, '
    '"offset" bigint, payload text, error text) on commit delete rows'
)


def dead_letter_insert_sql(schema: str = "ops") -> str:
    return (
        f'insert into {schema}.dead_letters (topic, "partition", "offset", payload, error) '
        f'select topic, "partition", "offset", payload, error from stage_dead_letters '
        f'on conflict (topic, "partition", "offset") do nothing'
    )


@dataclass
class ParsedBatch:
    """One micro-batch after parsing, as Arrow tables ready for COPY.

    `rows` maps each stream to its valid rows, columns as `stage_columns(stream)`;
    `dead_letters` has topic, partition, offset, payload, error; `end_offsets` is
    {topic: {partition: next offset}} for the partitions this batch read.
    """

    rows: Mapping[contracts.Stream, object]  # pyarrow.Table
    dead_letters: object  # pyarrow.Table
    input_rows: int
    end_offsets: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResult:
    batch_id: int
    input_rows: int
    plays_rows: int  # plays new to raw.plays
    dead_letters: int
    duration_ms: int
    skipped: bool = False  # already committed before a restart
    copied_pieces: int = 0  # pieces of plays COPied straight into raw.plays (0: the batch took the upsert)


def _csv(table) -> io.BytesIO:
    import pyarrow.csv as pacsv

    buf = io.BytesIO()
    # Strings are always quoted and NULL is an empty unquoted field: exactly Postgres' CSV.
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False, batch_size=65536))
    buf.seek(0)
    return buf


def _copy(cur, target: str, columns: list[str], source) -> None:
    """COPY into `target`: `source` is an Arrow table, or a file object that reads as CSV."""
    quoted = ", ".join(f'"{c}"' for c in columns)
    csv = source if hasattr(source, "read") else _csv(source)
    cur.copy_expert(f"copy {target} ({quoted}) from stdin with (format csv)", csv, size=1 << 20)


def with_timestamps(table, stream: contracts.Stream):
    """The stage table with its epoch-ms columns as timestamps: what a COPY into the raw table takes.

    Written as '2025-11-13 02:13:20.000', exact, and read as UTC (`prepare_session`): Arrow writes
    a UTC-zoned timestamp ten times slower (2 s per million rows, per column).
    """
    import pyarrow as pa

    for f in stream.fields:
        if f.type == "timestamp_ms":
            i = table.schema.get_field_index(f.name)
            table = table.set_column(i, f.name, table[f.name].cast(pa.timestamp("ms")))
    return table


class _NewPlaysCsv:
    """The file COPY reads the batch's plays from: each piece's plays as CSV, made when Postgres asks
    for more. One COPY for the whole batch, fed while Spark still computes it: Postgres parses a piece
    while the next one is read and converted here, and never waits at the end of a piece. (A COPY per
    piece, with its savepoint and round trips, did: a million plays end to end were committed after
    13.1-18.0 s that way, 10.5-15.5 s this way, five interleaved pairs of bench/e2e_throughput.py.)

    Every piece read is kept in `pieces`. A play of someone in `deleted` (SHA-256 of user ids) stops
    the COPY early with `refused` set. What goes wrong while reading (the Spark job failing) is kept
    in `error`: psycopg2 replaces it with its own "COPY failed" error.
    """

    def __init__(self, chunks: Iterable[ParsedBatch], deleted: set[str]):
        self.chunks = iter(chunks)
        self.deleted = deleted
        self.pieces: list[ParsedBatch] = []
        self.copied = 0  # pieces with plays
        self.refused = False
        self.error: BaseException | None = None
        self._pending = b""

    def read(self, size: int) -> bytes:
        try:
            while not self._pending and not self.refused:
                chunk = next(self.chunks, None)
                if chunk is None:
                    return b""
                self.pieces.append(chunk)
                table = chunk.rows.get(contracts.PLAYS)
                if table is None or table.num_rows == 0:
                    continue
                if self.deleted and self.deleted & _user_hashes(table):
                    self.refused = True
                    return b""
                self._pending = _csv(with_timestamps(table, contracts.PLAYS)).getvalue()
                self.copied += 1
        except BaseException as exc:
            self.error = exc
            raise
        data, self._pending = self._pending, b""
        return data

    def rest(self) -> Iterator[ParsedBatch]:
        """Every piece of the batch: those read so far, then the ones the COPY did not get to."""
        yield from self.pieces
        yield from self.chunks


def _user_hashes(table) -> set[str]:
    import hashlib

    import pyarrow.compute as pc

    return {hashlib.sha256(u.encode()).hexdigest() for u in pc.unique(table["user_id"]).to_pylist()}


def _copy_new_plays(cur, chunks: Iterable[ParsedBatch], schema: str) -> tuple[_NewPlaysCsv, bool]:
    """COPY the plays of every piece straight into `<schema>.plays`, in one statement. False (nothing
    written) if any of them is already there or twice in the batch, or belongs to someone who deleted
    their data: then the batch's plays take the upsert, which handles both."""
    cur.execute("select user_id_sha256 from app.deleted_users")
    plays = _NewPlaysCsv(chunks, {h for (h,) in cur.fetchall()})
    cur.execute("savepoint new_plays")
    try:
        _copy(cur, f"{schema}.{table_name(contracts.PLAYS)}", [c for c, _ in stage_columns(contracts.PLAYS)], plays)
    except pg_errors.UniqueViolation:
        cur.execute("rollback to savepoint new_plays")
        return plays, False
    except psycopg2.Error:
        if plays.error is not None:
            raise plays.error from None
        raise
    if plays.refused:
        cur.execute("rollback to savepoint new_plays")
        return plays, False
    cur.execute("release savepoint new_plays")
    return plays, True


def prepare_session(conn) -> None:
    """Once per connection: room for big stage tables in memory, no waiting forever on locks, and
    timestamps without a zone (the plays COPied straight in) read as UTC."""
    with conn.cursor() as cur:
        # temp_buffers can only be set before the session touches its first temp table.
        cur.execute("set temp_buffers = '256MB'; set lock_timeout = '60s'; set time zone 'UTC'")
    conn.commit()


def merge_offsets(previous: Mapping | None, current: Mapping) -> dict[str, dict[str, int]]:
    """Offsets after this batch: partitions it did not read keep the previous batch's value."""
    merged = {t: dict(p) for t, p in (previous or {}).items()}
    for topic, partitions in current.items():
        for partition, offset in partitions.items():
            old = merged.setdefault(topic, {}).get(str(partition))
            merged[topic][str(partition)] = max(int(offset), int(old)) if old is not None else int(offset)
    return merged


def write_batch(
    conn,
    query_id: str,
    batch_id: int,
    batch: ParsedBatch,
    started: float,
    raw_schema: str = "raw",
    ops_schema: str = "ops",
    before_commit: Callable[[], None] | None = None,
) -> BatchResult:
    """Write `batch` in one transaction and commit; skip it if (query_id, batch_id) is already in.

    `conn` is a psycopg2 connection (not autocommit) that went through `prepare_session`;
    `started` is the `time.monotonic()` when the batch began, for its duration.
    `before_commit` runs after every statement, just before COMMIT (crash tests).
    """
    return write_chunks(conn, query_id, batch_id, [batch], started, raw_schema, ops_schema, before_commit)


def write_chunks(
    conn,
    query_id: str,
    batch_id: int,
    chunks: Iterable[ParsedBatch],
    started: float,
    raw_schema: str = "raw",
    ops_schema: str = "ops",
    before_commit: Callable[[], None] | None = None,
) -> BatchResult:
    """`write_batch` for a micro-batch that arrives in pieces, still ONE transaction.

    `chunks` is iterated only if the batch is not committed yet (so a lazy one costs nothing
    on a replay), and each piece's plays go into raw.plays' COPY as it arrives (insert-if-absent
    does not depend on order), while entities and dead letters are staged and merged after it
    (the newest version, ties by Kafka position, needs the whole batch). The consumer feeds the
    pieces as Spark finishes them, so Postgres works while Spark still parses. When the plays
    take the upsert instead, each piece is staged and upserted in turn.
    """
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"select 1 from {ops_schema}.consumer_batches where query_id = %s and batch_id = %s",
                (query_id, batch_id),
            )
            if cur.fetchone():
                conn.rollback()
                return BatchResult(batch_id, 0, 0, 0, 0, skipped=True)

            plays, copied = _copy_new_plays(cur, chunks, raw_schema)
            input_rows = plays_rows = dead = 0
            end_offsets: dict[str, dict[str, int]] = {}
            staged: list[contracts.Stream] = []
            for chunk in plays.rest():
                input_rows += chunk.input_rows
                end_offsets = merge_offsets(end_offsets, chunk.end_offsets)
                for stream, table in chunk.rows.items():
                    if table.num_rows == 0:
                        continue
                    if stream.topic == contracts.PLAYS_TOPIC and copied:
                        plays_rows += table.num_rows
                        continue
                    stage = f"stage_{table_name(stream)}"
                    if stream not in staged:
                        cur.execute(create_stage_sql(stream))
                        staged.append(stream)
                    _copy(cur, stage, [c for c, _ in stage_columns(stream)], table)
                    if stream.topic == contracts.PLAYS_TOPIC:
                        cur.execute(upsert_sql(stream, raw_schema))
                        plays_rows += cur.rowcount
                        # Emptied for the next piece (TRUNCATE, not DELETE: no dead rows to scan again).
                        cur.execute(f"truncate {stage}")
                if chunk.dead_letters.num_rows:
                    if not dead:
                        cur.execute(DEAD_LETTER_STAGE_SQL)
                    dead += chunk.dead_letters.num_rows
                    _copy(cur, "stage_dead_letters", ["topic", "partition", "offset", "payload", "error"],
                          chunk.dead_letters)

            for stream in staged:
                if stream.topic != contracts.PLAYS_TOPIC:
                    cur.execute(upsert_sql(stream, raw_schema))
            if dead:
                cur.execute(dead_letter_insert_sql(ops_schema))

            cur.execute(
                f"select end_offsets from {ops_schema}.consumer_batches where query_id = %s "
                f"order by batch_id desc limit 1",
                (query_id,),
            )
            previous = cur.fetchone()
            offsets = merge_offsets(previous[0] if previous else None, end_offsets)
            duration_ms = int((time.monotonic() - started) * 1000)
            # clock_timestamp(), not now(): the moment of commit, for heartbeat age and latency.
            cur.execute(
                f"insert into {ops_schema}.consumer_batches (query_id, batch_id, input_rows, plays_rows, "
                f"dead_letters, duration_ms, end_offsets, committed_at) "
                f"values (%s, %s, %s, %s, %s, %s, %s, clock_timestamp())",
                (query_id, batch_id, input_rows, plays_rows, dead, duration_ms, json.dumps(offsets)),
            )
        if before_commit is not None:
            before_commit()
        conn.commit()
    except BaseException:
        try:
            conn.rollback()
        except psycopg2.Error:  # the connection itself is gone; Postgres drops the transaction
            pass
        raise
    return BatchResult(batch_id, input_rows, plays_rows, dead, duration_ms,
                       copied_pieces=plays.copied if copied else 0)
