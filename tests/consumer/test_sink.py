"""The Postgres sink on its own (no Spark): one transaction per batch, upserts, idempotence."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import psycopg2
import pyarrow as pa
import pytest

from weekly_wrapped import contracts
from weekly_wrapped.db import apply_schema
from weekly_wrapped.streaming import sink

from consumer_helpers import query


def stage_table(stream: contracts.Stream, rows: list[dict]) -> pa.Table:
    """Rows (contract fields + kafka_partition/offset) as the Arrow table the consumer hands the sink."""
    columns = [c for c, _ in sink.stage_columns(stream)]
    table = {c: [r.get(c) for r in rows] for c in columns}
    for f in stream.fields:
        if f.type == "string_array":
            table[f.name] = [None if v is None else json.dumps(v) for v in table[f.name]]
    return pa.table(table, schema=pa.schema([(c, _arrow(kind)) for c, kind in sink.stage_columns(stream)]))


def _arrow(kind: str):
    return {"text": pa.string(), "bigint": pa.int64(), "integer": pa.int32(), "boolean": pa.bool_()}[kind]


def dead_table(rows: list[dict]) -> pa.Table:
    return pa.table({
        "topic": pa.array([r["topic"] for r in rows], pa.string()),
        "partition": pa.array([r["partition"] for r in rows], pa.int32()),
        "offset": pa.array([r["offset"] for r in rows], pa.int64()),
        "payload": pa.array([r["payload"] for r in rows], pa.string()),
        "error": pa.array([r["error"] for r in rows], pa.string()),
    })


def batch(plays=(), tracks=(), dead=(), offsets=None) -> sink.ParsedBatch:
    rows = {}
    if plays:
        rows[contracts.PLAYS] = stage_table(contracts.PLAYS, list(plays))
    if tracks:
        rows[contracts.TRACKS] = stage_table(contracts.TRACKS, list(tracks))
    return sink.ParsedBatch(rows, dead_table(list(dead)), len(plays) + len(tracks) + len(dead), offsets or {})


def a_play(i: int, user: str = "u1") -> dict:
    return {"user_id": user, "played_at": 1_763_000_000_123 + i, "track_id": f"t{i}", "context_uri": None,
            "source": "api", "ms_played": None, "ingested_at": 1_763_000_100_000,
            "kafka_partition": 0, "kafka_offset": i}


def a_track(track_id: str, fetched_at: int, name: str, offset: int = 0, artist_ids=("a1", "a2")) -> dict:
    return {"track_id": track_id, "name": name, "duration_ms": 1000, "explicit": True, "popularity": None,
            "album_id": "al", "artist_ids": None if artist_ids is None else list(artist_ids), "track_number": 1,
            "fetched_at": fetched_at, "kafka_partition": 0, "kafka_offset": offset}


@pytest.fixture
def conn(consumer_db):
    _, dsn = consumer_db
    apply_schema(dsn)
    # Not UTC: the sink's session must not depend on the server's or the client's time zone.
    connection = psycopg2.connect(dsn, options="-c timezone=Asia/Kolkata")
    sink.prepare_session(connection)
    yield connection, dsn
    connection.close()


def write(conn, batch_id, parsed, **kw):
    return sink.write_batch(conn, "q1", batch_id, parsed, time.monotonic(), **kw)


def test_plays_are_written_once_with_exact_timestamps(conn):
    c, dsn = conn
    result = write(c, 0, batch(plays=[a_play(1), a_play(2), a_play(1)]))  # a duplicate inside the batch
    assert result.plays_rows == 2
    result = write(c, 1, batch(plays=[a_play(2), a_play(3)]))  # and one across batches
    assert result.plays_rows == 1
    rows = query(dsn, "select played_at, kafka_offset from raw.plays order by played_at")
    assert [r[0] for r in rows] == [
        datetime.fromtimestamp((1_763_000_000_123 + i) / 1000, timezone.utc) for i in (1, 2, 3)
    ]
    assert query(dsn, "select count(*), count(distinct (user_id, played_at, track_id)) from raw.plays") == [(3, 3)]


def test_new_plays_are_copied_straight_in_with_every_value_exact(conn):
    c, dsn = conn
    odd = dict(a_play(7), context_uri='spotify:playlist:"x",\n\u00e9\U0001f3b5', ms_played=2**40, reason_end="trackdone",
               shuffle=True, offline=False, kafka_partition=2, kafka_offset=2**40)
    plays = [a_play(1), odd, dict(a_play(3), played_at=0), dict(a_play(4), played_at=253_402_300_799_999)]
    result = write(c, 0, batch(plays=plays))
    assert (result.plays_rows, result.copied_pieces) == (4, 1)
    rows = query(dsn, "select track_id, (extract(epoch from played_at) * 1000)::bigint, context_uri, ms_played, "
                      "reason_end, shuffle, offline, kafka_partition, kafka_offset, "
                      "(extract(epoch from ingested_at) * 1000)::bigint from raw.plays order by track_id")
    assert rows == [(p["track_id"], p["played_at"], p["context_uri"], p["ms_played"], p.get("reason_end"),
                     p.get("shuffle"), p.get("offline"), p["kafka_partition"], p["kafka_offset"], p["ingested_at"])
                    for p in sorted(plays, key=lambda p: p["track_id"])]


def test_a_batch_with_a_play_already_there_takes_the_upsert_for_all_its_plays(conn):
    c, dsn = conn
    write(c, 0, batch(plays=[a_play(2)]))
    pieces = [batch(plays=[a_play(1)]), batch(plays=[a_play(2), a_play(3)]), batch(plays=[a_play(4), a_play(4)])]
    result = sink.write_chunks(c, "q1", 1, pieces, time.monotonic())
    assert (result.plays_rows, result.copied_pieces) == (3, 0)
    assert query(dsn, "select track_id from raw.plays order by 1") == [("t1",), ("t2",), ("t3",), ("t4",)]


def test_a_batch_in_pieces_lands_whole_plays_entities_and_dead_letters(conn):
    c, dsn = conn
    dead = {"topic": "p", "partition": 0, "offset": 9, "payload": "x", "error": "e"}
    pieces = [batch(plays=[a_play(1)], tracks=[a_track("t1", 10, "old")], offsets={"p": {"0": 2}}),
              batch(tracks=[a_track("t1", 20, "new", 1)], dead=[dead], offsets={"p": {"1": 5}}),
              batch(plays=[a_play(2), a_play(3)], offsets={"p": {"0": 4}})]
    result = sink.write_chunks(c, "q1", 0, iter(pieces), time.monotonic())
    assert (result.input_rows, result.plays_rows, result.dead_letters, result.copied_pieces) == (6, 3, 1, 2)
    assert query(dsn, "select track_id from raw.plays order by 1") == [("t1",), ("t2",), ("t3",)]
    assert query(dsn, "select name from raw.tracks") == [("new",)]
    assert query(dsn, 'select "offset", error from ops.dead_letters') == [(9, "e")]
    assert query(dsn, "select end_offsets from ops.consumer_batches") == [({"p": {"0": 4, "1": 5}},)]


def test_a_failure_while_the_pieces_arrive_is_raised_as_itself_and_nothing_is_written(conn):
    c, dsn = conn

    def pieces():
        yield batch(plays=[a_play(1)])
        raise RuntimeError("the Spark job failed")

    with pytest.raises(RuntimeError, match="the Spark job failed"):
        sink.write_chunks(c, "q1", 0, pieces(), time.monotonic())
    assert query(dsn, "select (select count(*) from raw.plays), (select count(*) from ops.consumer_batches)") == [(0, 0)]
    result = write(c, 0, batch(plays=[a_play(1)]))  # the same connection writes the re-run
    assert (result.plays_rows, result.copied_pieces) == (1, 1)


def test_plays_of_someone_who_deleted_their_data_are_not_loaded_until_they_join_again(conn):
    from cryptography.fernet import Fernet

    from weekly_wrapped.users import accounts, leaving

    c, dsn = conn
    write(c, 0, batch(plays=[a_play(1, "gone"), a_play(2, "stays")]))
    leaving.delete_user_data(dsn, "gone")  # while more of their plays are still in Kafka
    assert query(dsn, "select count(*), count(*) filter (where strpos(user_id_sha256, 'gone') > 0) "
                      "from app.deleted_users") == [(1, 0)]  # a hash, never the id
    result = write(c, 1, batch(plays=[a_play(3, "gone"), a_play(4, "stays")]))
    assert (result.plays_rows, result.copied_pieces) == (1, 0)
    assert query(dsn, "select user_id, count(*) from raw.plays group by 1 order by 1") == [("stays", 2)]

    accounts.save_user(dsn, Fernet.generate_key().decode(), user_id="gone", display_name=None,
                       email="gone@example.org", time_zone="UTC", refresh_token="r")
    write(c, 2, batch(plays=[a_play(5, "gone")]))
    assert query(dsn, "select user_id, count(*) from raw.plays group by 1 order by 1") == [("gone", 1), ("stays", 2)]


def test_after_someone_deleted_their_data_the_plays_of_others_still_go_straight_in(conn):
    from weekly_wrapped.users import leaving

    c, dsn = conn
    write(c, 0, batch(plays=[a_play(1, "gone")]))
    leaving.delete_user_data(dsn, "gone")
    result = write(c, 1, batch(plays=[a_play(2, "stays"), a_play(3, "stays")]))
    assert (result.plays_rows, result.copied_pieces) == (2, 1)
    result = write(c, 2, batch(plays=[a_play(4, "gone"), a_play(5, "stays")]))
    assert (result.plays_rows, result.copied_pieces) == (1, 0)
    assert query(dsn, "select user_id, count(*) from raw.plays group by 1 order by 1") == [("stays", 3)]
    pieces = [batch(plays=[a_play(6, "stays")]), batch(plays=[a_play(7, "gone"), a_play(8, "stays")])]
    result = sink.write_chunks(c, "q1", 3, pieces, time.monotonic())
    assert (result.plays_rows, result.copied_pieces) == (2, 0)  # a later piece sends the whole batch to the upsert
    assert query(dsn, "select user_id, count(*) from raw.plays group by 1 order by 1") == [("stays", 5)]


def test_entities_keep_the_freshest_version_and_never_move_backwards(conn):
    c, dsn = conn
    write(c, 0, batch(tracks=[a_track("t1", 10, "v10"), a_track("t1", 30, "v30", 1), a_track("t1", 25, "v25", 2)]))
    assert query(dsn, "select name, artist_ids from raw.tracks") == [("v30", ["a1", "a2"])]
    write(c, 1, batch(tracks=[a_track("t1", 20, "older")]))
    assert query(dsn, "select name from raw.tracks") == [("v30",)]
    write(c, 2, batch(tracks=[a_track("t1", 40, "v40", artist_ids=[]), a_track("t2", 1, "other", artist_ids=None)]))
    assert query(dsn, "select track_id, name, artist_ids from raw.tracks order by 1") == [
        ("t1", "v40", []), ("t2", "other", None)]


def test_a_batch_is_idempotent_per_batch_id(conn):
    c, dsn = conn
    parsed = batch(plays=[a_play(1)], dead=[{"topic": "p", "partition": 0, "offset": 5, "payload": "x", "error": "e"}],
                   offsets={"p": {"0": 6}})
    first = write(c, 0, parsed)
    again = write(c, 0, parsed)
    assert not first.skipped and again.skipped
    assert query(dsn, "select count(*) from ops.consumer_batches") == [(1,)]
    assert query(dsn, "select input_rows, plays_rows, dead_letters from ops.consumer_batches") == [(2, 1, 1)]


def test_rows_dead_letters_and_progress_commit_together_or_not_at_all(conn):
    c, dsn = conn

    def crash():
        raise RuntimeError("driver died just before COMMIT")

    parsed = batch(plays=[a_play(1)], dead=[{"topic": "p", "partition": 0, "offset": 1, "payload": "x", "error": "e"}])
    with pytest.raises(RuntimeError):
        write(c, 0, parsed, before_commit=crash)
    assert query(dsn, "select (select count(*) from raw.plays), (select count(*) from ops.dead_letters), "
                      "(select count(*) from ops.consumer_batches)") == [(0, 0, 0)]
    write(c, 0, parsed)  # the re-run after the "crash" commits everything
    assert query(dsn, "select (select count(*) from raw.plays), (select count(*) from ops.dead_letters), "
                      "(select count(*) from ops.consumer_batches)") == [(1, 1, 1)]


def test_progress_rows_carry_cumulative_end_offsets(conn):
    c, dsn = conn
    write(c, 0, batch(plays=[a_play(1)], offsets={"p": {"0": 10, "1": 4}, "t": {"0": 2}}))
    write(c, 1, batch(plays=[a_play(2)], offsets={"p": {"0": 12}}))
    (offsets,), = query(dsn, "select end_offsets from ops.consumer_batches where batch_id = 1")
    assert offsets == {"p": {"0": 12, "1": 4}, "t": {"0": 2}}


def test_upsert_sql_uses_the_natural_keys():
    assert "on conflict (user_id, played_at, track_id) do nothing" in sink.upsert_sql(contracts.PLAYS)
    for stream in (contracts.TRACKS, contracts.ALBUMS, contracts.ARTISTS):
        sql = sink.upsert_sql(stream)
        assert f"on conflict ({stream.key}) do update" in sql
        assert f"where raw.{sink.table_name(stream)}.fetched_at < excluded.fetched_at" in sql
