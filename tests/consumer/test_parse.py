"""The pure parse functions on a local SparkSession: valid rows per stream, dead letters with reasons."""

from __future__ import annotations

import json

import pytest
from pyspark.sql import Row

from weekly_wrapped import contracts
from weekly_wrapped.streaming import parse, schemas

from consumer_helpers import album, artist, play, track

PLAYS, TRACKS = contracts.PLAYS_TOPIC, contracts.TRACKS_TOPIC


def kafka_batch(spark, messages):
    """[(topic, value)] -> a DataFrame shaped like the Kafka source's micro-batch."""
    rows = []
    for offset, (topic, value) in enumerate(messages):
        if isinstance(value, dict):
            value = json.dumps(value)
        if isinstance(value, str):
            value = value.encode()
        rows.append((None, value, topic, offset % 3, offset, None, 0))
    return spark.createDataFrame(rows, schemas.KAFKA_SOURCE_SCHEMA)


def errors_of(spark, topic, value) -> list[str]:
    batch = kafka_batch(spark, [(topic, value)])
    return [r.error for r in parse.dead_letters(parse.check_batch(batch, {topic: contracts.STREAMS[topic]})).collect()]


def test_schemas_are_derived_from_the_contracts():
    for stream in contracts.STREAMS.values():
        value = schemas.value_schema(stream)
        assert value.names == ["schema_version", *stream.field_names]
        row = schemas.row_schema(stream)
        assert row.names == [*stream.field_names, "kafka_topic", "kafka_partition", "kafka_offset"]
        for f in stream.fields:
            assert row[f.name].dataType == schemas.SPARK_TYPES[f.type]
            assert row[f.name].nullable == (not f.required)


def test_valid_messages_of_every_stream_become_typed_rows(spark):
    messages = [
        (PLAYS, play("u1", 1, ms_played=1234, context_uri="spotify:album:x")),
        (TRACKS, track("t1", 5)),
        (contracts.ALBUMS_TOPIC, album("a1", 6)),
        (contracts.ARTISTS_TOPIC, artist("r1", 7)),
    ]
    valid, dead = parse.split_batch(kafka_batch(spark, messages))
    assert dead.count() == 0
    for (topic, message) in messages:
        stream = contracts.STREAMS[topic]
        df = valid[topic]
        expected = schemas.row_schema(stream)
        assert [(f.name, f.dataType) for f in df.schema.fields] == [(f.name, f.dataType) for f in expected.fields]
        (row,) = df.collect()
        assert {k: row[k] for k in stream.field_names} == {k: message[k] for k in stream.field_names}
        assert row.kafka_topic == topic


def test_a_valid_play_keeps_its_kafka_position(spark):
    batch = kafka_batch(spark, [(PLAYS, "nope"), (PLAYS, play("u1", 1))])
    (row,) = parse.valid_rows(parse.check_batch(batch), PLAYS, contracts.PLAYS).collect()
    assert (row.kafka_partition, row.kafka_offset) == (1, 1)


MALFORMED = {
    "not JSON": ("{not json", "not JSON"),
    "JSON but not an object": ("[1, 2]", "not JSON"),
    "not UTF-8": (b"\xff\xfe{\"user_id\": 1}", "not UTF-8"),
    "empty value": (None, "empty message"),
    "oversized": (json.dumps(play("u1", 1, context_uri="x" * contracts.MAX_MESSAGE_BYTES)), "oversized: "),
    "unknown schema_version": (play("u1", 1, schema_version=2), "unknown schema_version 2"),
    "missing schema_version": ({k: v for k, v in play("u1", 1).items() if k != "schema_version"},
                               "unknown schema_version (missing)"),
    "missing required field": ({k: v for k, v in play("u1", 1).items() if k != "track_id"},
                               "missing required field 'track_id'"),
    "required field null": (play("u1", 1, user_id=None), "missing required field 'user_id'"),
    "string for a timestamp": (play("u1", 1, played_at="2026-11-20T10:00:00Z"),
                               "wrong type for 'played_at': expected timestamp_ms, got STRING"),
    "number for a string": (play("u1", 1, track_id=123), "wrong type for 'track_id': expected string, got BIGINT"),
    "fraction for a long": (play("u1", 1, ms_played=1.5), "wrong type for 'ms_played'"),
    "bool for a long": (play("u1", 1, ms_played=True), "wrong type for 'ms_played'"),
    "timestamp out of range": (play("u1", 1, played_at=-5), "'played_at' out of range"),
    "NUL in a string": (play("u1\u0000", 1), "NUL character in 'user_id'"),
    "unknown source": (play("u1", 1, source="radio"), "source must be one of"),
}


@pytest.fixture(scope="module")
def malformed_errors(spark) -> dict[str, list[str]]:
    """All malformed kinds in one batch (one Spark job), with a valid play between each."""
    kinds = sorted(MALFORMED)
    messages = []
    for kind in kinds:
        messages += [(PLAYS, MALFORMED[kind][0]), (PLAYS, play("ok", len(messages)))]
    dead = parse.dead_letters(parse.check_batch(kafka_batch(spark, messages))).collect()
    errors: dict[str, list[str]] = {kind: [] for kind in kinds}
    for row in dead:
        assert row.offset % 2 == 0, f"a valid play was dead-lettered: {row}"
        errors[kinds[row.offset // 2]].append(row.error)
    return errors


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_each_malformed_play_is_a_dead_letter_with_its_reason(malformed_errors, kind):
    errors = malformed_errors[kind]
    assert len(errors) == 1 and MALFORMED[kind][1] in errors[0], errors


@pytest.mark.parametrize(
    "message, reason",
    [
        (dict(track("t1", 1), popularity=2**40), "'popularity' out of int range"),
        (dict(track("t1", 1), explicit="yes"), "wrong type for 'explicit': expected boolean"),
        (dict(track("t1", 1), artist_ids="a,b"), "wrong type for 'artist_ids': expected string_array"),
        (dict(track("t1", 1), artist_ids=["a", None]), "null or NUL element in 'artist_ids'"),
        (dict(track("t1", 1), artist_ids=["a", 1]), "wrong type for 'artist_ids'"),
        ({k: v for k, v in track("t1", 1).items() if k != "fetched_at"}, "missing required field 'fetched_at'"),
    ],
)
def test_malformed_tracks(spark, message, reason):
    errors = errors_of(spark, TRACKS, message)
    assert len(errors) == 1 and reason in errors[0], errors


def test_what_the_contract_allows_is_valid(spark):
    # Optional fields absent or null, an empty array, extra fields (a tolerant reader).
    messages = [
        {k: v for k, v in play("u1", 1).items() if k not in ("context_uri", "ms_played")},
        play("u1", 2, extra_field={"new": True}),
    ]
    batch = kafka_batch(spark, [(PLAYS, m) for m in messages])
    assert parse.dead_letters(parse.check_batch(batch)).count() == 0
    batch = kafka_batch(spark, [(TRACKS, dict(track("t1", 1), artist_ids=[], popularity=None))])
    (row,) = parse.valid_rows(parse.check_batch(batch), TRACKS, contracts.TRACKS).collect()
    assert row.artist_ids == [] and row.popularity is None


def test_dead_letters_keep_position_and_a_storable_payload(spark):
    oversized = json.dumps(play("u1", 1, context_uri="é" * contracts.MAX_MESSAGE_BYTES))
    batch = kafka_batch(spark, [(PLAYS, play("u1", 0)), (PLAYS, b"bad\x00\xff"), (PLAYS, oversized)])
    dead = {r.offset: r for r in parse.dead_letters(parse.check_batch(batch)).collect()}
    assert sorted(dead) == [1, 2]
    assert dead[1].topic == PLAYS and dead[1].partition == 1
    assert "\x00" not in dead[1].payload and dead[1].payload.startswith("bad")
    assert len(dead[2].payload) <= contracts.MAX_MESSAGE_BYTES
    assert [f.name for f in parse.dead_letters(parse.check_batch(batch)).schema] == schemas.DEAD_LETTER_SCHEMA.names


def test_split_batch_routes_by_topic_and_collects_every_dead_letter(spark):
    topics = {"my.plays": contracts.PLAYS, "my.tracks": contracts.TRACKS}
    batch = kafka_batch(spark, [("my.plays", play("u1", 1)), ("my.tracks", track("t1", 1)),
                                ("my.plays", "x"), ("my.tracks", "y"), ("my.plays", play("u1", 2))])
    valid, dead = parse.split_batch(batch, topics)
    assert valid["my.plays"].count() == 2 and valid["my.tracks"].count() == 1
    assert sorted((r.topic, r.offset) for r in dead.collect()) == [("my.plays", 2), ("my.tracks", 3)]


def test_a_message_of_another_topic_is_a_dead_letter(spark):
    batch = kafka_batch(spark, [("someone.elses", play("u", 1))])
    (row,) = parse.dead_letters(parse.check_batch(batch)).collect()
    assert row.error == "unknown topic someone.elses"


def test_for_sink_and_split_arrow_give_the_sink_its_tables(spark):
    from weekly_wrapped.streaming import sink
    from weekly_wrapped.streaming.consumer import split_arrow

    topics = contracts.STREAMS
    messages = [(PLAYS, play("u", i)) for i in range(7)] + [(TRACKS, track("t1", 1)), (PLAYS, "x")]
    table = parse.for_sink(parse.check_batch(kafka_batch(spark, messages), topics), topics).toArrow()
    batch = split_arrow(table, topics)
    assert batch.input_rows == 9
    assert batch.rows[contracts.PLAYS].column_names == [c for c, _ in sink.stage_columns(contracts.PLAYS)]
    assert batch.rows[contracts.PLAYS].num_rows == 7
    tracks = batch.rows[contracts.TRACKS].to_pylist()
    assert json.loads(tracks[0]["artist_ids"]) == ["artist-1", "artist-2"]
    assert batch.dead_letters.to_pylist() == [
        {"topic": PLAYS, "partition": 2, "offset": 8, "payload": "x", "error": "not JSON (or not a JSON object)"}]
    # Offsets are per partition (the batch helper puts offset i in partition i % 3): the next one to read.
    assert batch.end_offsets == {PLAYS: {"0": 7, "1": 5, "2": 9}, TRACKS: {"1": 8}}


def test_parsing_agrees_with_the_producers_validate(spark):
    """Whatever contracts.validate accepts, the consumer accepts (same contract on both ends)."""
    samples = [(PLAYS, play("u1", 3)), (TRACKS, track("t9", 3)), (contracts.ALBUMS_TOPIC, album("a", 1)),
               (contracts.ARTISTS_TOPIC, artist("r", 2))]
    for topic, message in samples:
        contracts.validate(topic, message)
    _, dead = parse.split_batch(kafka_batch(spark, samples))
    assert dead.collect() == []
    assert Row  # (imported for readers who extend these tests)
