"""Parsing as the consumer job runs it, on a local SparkSession.

`spark/consume_streams.py` puts `parse.for_sink(parse.check_batch(batch, topics), topics)`
in its streaming plan and hands each micro-batch's Arrow table to `consumer.split_arrow`;
these tests run that same path and look at what the sink receives: typed rows per
stream, dead letters with their reasons, end offsets.
"""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pytest
from pyspark.sql.types import BinaryType, IntegerType, LongType, StringType, StructField, StructType, TimestampType

from weekly_wrapped import contracts
from weekly_wrapped.streaming import parse
from weekly_wrapped.streaming.consumer import arrow_tables, split_arrow

from tests.support.messages import album, artist, play, track

PLAYS, TRACKS, ALBUMS, ARTISTS = contracts.TOPICS

# What the `kafka` source gives every micro-batch (Spark's Structured Streaming + Kafka guide).
KAFKA_SOURCE_SCHEMA = StructType([
    StructField("key", BinaryType()),
    StructField("value", BinaryType()),
    StructField("topic", StringType()),
    StructField("partition", IntegerType()),
    StructField("offset", LongType()),
    StructField("timestamp", TimestampType()),
    StructField("timestampType", IntegerType()),
])

# What the sink gets per stream, written out by hand (not derived from the contract, so a
# change to contracts.py, parse or split_arrow that moves, renames or retypes a column fails here).
# Arrays travel as JSON text; timestamps as epoch ms.
SINK_COLUMNS = {
    PLAYS: [("user_id", pa.string()), ("played_at", pa.int64()), ("track_id", pa.string()),
            ("context_uri", pa.string()), ("source", pa.string()), ("ms_played", pa.int64()),
            ("ingested_at", pa.int64()), ("reason_end", pa.string()), ("shuffle", pa.bool_()),
            ("offline", pa.bool_())],
    TRACKS: [("track_id", pa.string()), ("name", pa.string()), ("duration_ms", pa.int64()),
             ("explicit", pa.bool_()), ("popularity", pa.int32()), ("album_id", pa.string()),
             ("artist_ids", pa.string()), ("track_number", pa.int32()), ("fetched_at", pa.int64())],
    ALBUMS: [("album_id", pa.string()), ("name", pa.string()), ("album_type", pa.string()),
             ("release_date", pa.string()), ("release_date_precision", pa.string()),
             ("artist_ids", pa.string()), ("image_url", pa.string()), ("fetched_at", pa.int64())],
    ARTISTS: [("artist_id", pa.string()), ("name", pa.string()), ("genres", pa.string()),
              ("popularity", pa.int32()), ("followers", pa.int64()), ("image_url", pa.string()),
              ("fetched_at", pa.int64())],
}
KAFKA_POSITION = [("kafka_partition", pa.int32()), ("kafka_offset", pa.int64())]
DEAD_LETTER_COLUMNS = ["topic", "partition", "offset", "payload", "error"]


def kafka_batch(spark, messages):
    """[(topic, value)] -> a DataFrame shaped like the Kafka source's micro-batch (offset i in partition i % 3)."""
    rows = []
    for offset, (topic, value) in enumerate(messages):
        if isinstance(value, dict):
            value = json.dumps(value)
        if isinstance(value, str):
            value = value.encode()
        rows.append((None, value, topic, offset % 3, offset, None, 0))
    return spark.createDataFrame(rows, KAFKA_SOURCE_SCHEMA)


def consume(spark, messages, topics=contracts.STREAMS, fast_json=True):
    """One micro-batch through the consumer's path: check_batch -> for_sink -> Arrow -> split_arrow."""
    checked = parse.for_sink(parse.check_batch(kafka_batch(spark, messages), topics, fast_json), topics)
    whole = checked.toArrow()
    # The consumer reads the result a task at a time (arrow_tables): the same rows and types.
    pieces = list(arrow_tables(checked))
    assert pa.concat_tables(pieces).sort_by("kafka_offset").equals(whole.sort_by("kafka_offset"))
    return split_arrow(whole, topics)


def rows_of(batch, topic, topics=contracts.STREAMS) -> list[dict]:
    table = batch.rows.get(topics[topic])
    return [] if table is None else table.to_pylist()


def errors_of(spark, topic, value) -> list[str]:
    batch = consume(spark, [(topic, value)], {topic: contracts.STREAMS[topic]})
    return batch.dead_letters.column("error").to_pylist()


def test_valid_messages_of_every_stream_become_typed_rows(spark_session):
    messages = [
        (PLAYS, play("u1", 1, ms_played=1234, context_uri="spotify:album:x", reason_end="trackdone",
                     shuffle=True, offline=False)),
        (TRACKS, track("t1", 5)),
        (ALBUMS, album("a1", 6)),
        (ARTISTS, artist("r1", 7, genres=["trip hop"], followers=12)),
    ]
    batch = consume(spark_session, messages)
    assert batch.dead_letters.num_rows == 0
    for offset, (topic, message) in enumerate(messages):
        table = batch.rows[contracts.STREAMS[topic]]
        expected = SINK_COLUMNS[topic] + KAFKA_POSITION
        assert [(f.name, f.type) for f in table.schema] == expected, topic
        (row,) = table.to_pylist()
        wire = {k: json.dumps(v, separators=(",", ":")) if isinstance(v, list) else v for k, v in message.items()}
        assert row == {**{name: wire[name] for name, _ in SINK_COLUMNS[topic]},
                       "kafka_partition": offset % 3, "kafka_offset": offset}, topic


def test_a_valid_play_keeps_its_kafka_position(spark_session):
    batch = consume(spark_session, [(PLAYS, "nope"), (PLAYS, play("u1", 1))])
    (row,) = rows_of(batch, PLAYS)
    assert (row["kafka_partition"], row["kafka_offset"]) == (1, 1)


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
    "bool for a string": (play(True, 1), "wrong type for 'user_id': expected string, got BOOLEAN"),
    "object for a string": (play("u1", 1, context_uri={"uri": "spotify:album:x"}),
                            "wrong type for 'context_uri': expected string, got OBJECT"),
    "fraction for an optional string": (play("u1", 1, reason_end=-1.5e3), "wrong type for 'reason_end'"),
    "fraction for a long": (play("u1", 1, ms_played=1.5), "wrong type for 'ms_played'"),
    "bool for a long": (play("u1", 1, ms_played=True), "wrong type for 'ms_played'"),
    "timestamp out of range": (play("u1", 1, played_at=-5), "'played_at' out of range"),
    "NUL in a string": (play("u1\u0000", 1), "NUL character in 'user_id'"),
    "unknown source": (play("u1", 1, source="radio"), "source must be one of"),
}


@pytest.fixture(scope="module")
def malformed_batch(spark_session):
    """All malformed kinds in one batch (one Spark job), with a valid play after each."""
    kinds = sorted(MALFORMED)
    messages = []
    for kind in kinds:
        messages += [(PLAYS, MALFORMED[kind][0]), (PLAYS, play("ok", len(messages)))]
    return kinds, consume(spark_session, messages)


@pytest.fixture(scope="module")
def malformed_errors(malformed_batch) -> dict[str, list[str]]:
    kinds, batch = malformed_batch
    errors: dict[str, list[str]] = {kind: [] for kind in kinds}
    for row in batch.dead_letters.to_pylist():
        assert row["offset"] % 2 == 0, f"a valid play was dead-lettered: {row}"
        errors[kinds[row["offset"] // 2]].append(row["error"])
    return errors


def test_every_valid_play_between_the_malformed_ones_is_kept(malformed_batch):
    kinds, batch = malformed_batch
    assert sorted(r["kafka_offset"] for r in rows_of(batch, PLAYS)) == list(range(1, 2 * len(kinds), 2))


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_each_malformed_play_is_a_dead_letter_with_its_reason(malformed_errors, kind):
    errors = malformed_errors[kind]
    assert len(errors) == 1 and MALFORMED[kind][1] in errors[0], errors


@pytest.mark.parametrize(
    "message, reason",
    [
        (track("t1", 1, popularity=2**40), "'popularity' out of int range"),
        (track("t1", 1, explicit="yes"), "wrong type for 'explicit': expected boolean"),
        (track("t1", 1, artist_ids="a,b"), "wrong type for 'artist_ids': expected string_array"),
        (track("t1", 1, artist_ids=["a", None]), "null or NUL element in 'artist_ids'"),
        (track("t1", 1, artist_ids=["a", 1]), "wrong type for 'artist_ids'"),
        ({k: v for k, v in track("t1", 1).items() if k != "fetched_at"}, "missing required field 'fetched_at'"),
    ],
)
def test_malformed_tracks(spark_session, message, reason):
    errors = errors_of(spark_session, TRACKS, message)
    assert len(errors) == 1 and reason in errors[0], errors


def test_what_the_contract_allows_is_valid(spark_session):
    # Optional fields absent or null, an empty array, extra fields (a tolerant reader).
    batch = consume(spark_session, [
        (PLAYS, {k: v for k, v in play("u1", 1).items() if k not in ("context_uri", "ms_played")}),
        (PLAYS, play("u1", 2, extra_field={"new": True})),
        (TRACKS, track("t1", 1, artist_ids=[], popularity=None)),
    ])
    assert batch.dead_letters.to_pylist() == []
    assert len(rows_of(batch, PLAYS)) == 2
    (row,) = rows_of(batch, TRACKS)
    assert row["artist_ids"] == "[]" and row["popularity"] is None


def test_strings_that_read_like_other_json_values_are_strings(spark_session):
    # A typed parse cannot tell "123" from 123; these take the second look, and pass it.
    looks_like = ["12345678", "-1.5e3", "true", "false", "{\"a\": 1}", "[1]", "NaN", "1\n"]
    messages = [(PLAYS, play(text, i, reason_end=text)) for i, text in enumerate(looks_like)]
    messages.append((PLAYS, play("u1", 99, track_id=4)))  # beside them, a real number is still refused
    batch = consume(spark_session, messages)
    assert [(r["user_id"], r["reason_end"]) for r in sorted(rows_of(batch, PLAYS), key=lambda r: r["played_at"])] \
        == [(text, text) for text in looks_like]
    assert batch.dead_letters.column("error").to_pylist() == ["wrong type for 'track_id': expected string, got BIGINT"]


def test_dead_letters_keep_position_and_a_storable_payload(spark_session):
    oversized = json.dumps(play("u1", 1, context_uri="é" * contracts.MAX_MESSAGE_BYTES))
    batch = consume(spark_session, [(PLAYS, play("u1", 0)), (PLAYS, b"bad\x00\xff"), (PLAYS, oversized)])
    assert batch.dead_letters.column_names == DEAD_LETTER_COLUMNS
    dead = {r["offset"]: r for r in batch.dead_letters.to_pylist()}
    assert sorted(dead) == [1, 2]
    assert dead[1]["topic"] == PLAYS and dead[1]["partition"] == 1
    assert "\x00" not in dead[1]["payload"] and dead[1]["payload"].startswith("bad")
    assert len(dead[2]["payload"]) <= contracts.MAX_MESSAGE_BYTES


def test_messages_are_routed_by_topic_and_every_dead_letter_collected(spark_session):
    topics = {"my.plays": contracts.PLAYS, "my.tracks": contracts.TRACKS}
    batch = consume(spark_session, [("my.plays", play("u1", 1)), ("my.tracks", track("t1", 1)),
                            ("my.plays", "x"), ("my.tracks", "y"), ("my.plays", play("u1", 2))], topics)
    assert [r["kafka_offset"] for r in rows_of(batch, "my.plays", topics)] == [0, 4]
    assert [r["track_id"] for r in rows_of(batch, "my.tracks", topics)] == ["t1"]
    assert sorted((r["topic"], r["offset"]) for r in batch.dead_letters.to_pylist()) == [("my.plays", 2),
                                                                                         ("my.tracks", 3)]


def test_a_message_of_another_topic_is_a_dead_letter(spark_session):
    batch = consume(spark_session, [("someone.elses", play("u", 1))])
    (row,) = batch.dead_letters.to_pylist()
    assert row["error"] == "unknown topic someone.elses"


def test_a_batch_counts_every_message_and_ends_after_each_partitions_last_offset(spark_session):
    messages = [(PLAYS, play("u", i)) for i in range(7)] + [(TRACKS, track("t1", 1)), (PLAYS, "x")]
    batch = consume(spark_session, messages)
    assert batch.input_rows == 9
    assert len(rows_of(batch, PLAYS)) == 7 and json.loads(rows_of(batch, TRACKS)[0]["artist_ids"]) == [
        "artist-1", "artist-2"]
    assert batch.dead_letters.to_pylist() == [
        {"topic": PLAYS, "partition": 2, "offset": 8, "payload": "x", "error": "not JSON (or not a JSON object)"}]
    # Offsets are per partition (offset i is in partition i % 3): the next one to read.
    assert batch.end_offsets == {PLAYS: {"0": 7, "1": 5, "2": 9}, TRACKS: {"1": 8}}


def test_what_the_producer_sends_the_consumer_accepts(spark_session):
    """Messages as the producer puts them on the wire (validated, serialized by StreamProducer.send)
    are all valid rows at the consumer: the same contract on both ends."""
    from weekly_wrapped.ingest.producer import StreamProducer

    class Wire:  # stands in for confluent_kafka.Producer: keeps what would be sent
        def __init__(self):
            self.sent = []

        def produce(self, topic, value, key, on_delivery=None):
            self.sent.append((topic, value))

        def poll(self, timeout=0):
            return 0

    wire = Wire()
    producer = StreamProducer({"bootstrap.servers": "unused:9092"}, producer=wire)
    samples = [(PLAYS, play("u1", 3)), (PLAYS, play("u1", 4, ms_played=31_000, source="export")),
               (TRACKS, track("t9", 3)), (ALBUMS, album("a", 1)), (ARTISTS, artist("r", 2, genres=["pop"]))]
    producer.send_all(samples)
    batch = consume(spark_session, [(topic, value) for topic, value in wire.sent])
    assert batch.dead_letters.to_pylist() == []
    assert {topic: len(rows_of(batch, topic)) for topic in contracts.TOPICS} == {PLAYS: 2, TRACKS: 1, ALBUMS: 1,
                                                                                ARTISTS: 1}


# --- The fast path (spark/udf JsonFields) -------------------------------------------------------

_VALID = json.dumps(play("u1", 1))
# Plays the fast path must leave to from_json (its answer could differ), and ones it reads itself.
ODD_PLAYS = {
    "duplicate key, last valid": _VALID[:-1] + ', "user_id": "u2"}',
    "duplicate key, first valid": '{"user_id": 5, ' + _VALID[1:],
    "duplicate unknown key": _VALID[:-1] + ', "x": 1, "x": 2}',
    "single quotes": _VALID.replace('"u1"', "'u1'"),
    "byte-order mark": "\ufeff" + _VALID,
    "leading space": " " + _VALID,
    "trailing text": _VALID + " x",
    "trailing object": _VALID + _VALID,
    "trailing newline": _VALID + "\n",
    "cut short": _VALID[:-1],
    "field in other letters": _VALID[:-1] + ', "User_Id": "u9"}',
    "corrupt-record key": _VALID[:-1] + ', "_corrupt_record": "x"}',
    "long beyond 64 bits": _VALID.replace('"played_at": 1', '"played_at": 99999999999999999999'),
    "minus zero": json.dumps(play("u1", 1, ms_played=0)).replace('"ms_played": 0', '"ms_played": -0'),
    "exponent integer": json.dumps(play("u1", 1, ms_played=0)).replace('"ms_played": 0', '"ms_played": 1e3'),
    "leading zero": json.dumps(play("u1", 1, ms_played=0)).replace('"ms_played": 0', '"ms_played": 07'),
    "NaN": json.dumps(play("u1", 1, ms_played=0)).replace('"ms_played": 0', '"ms_played": NaN'),
    "string for a bool": json.dumps(play("u1", 1, shuffle="true")),
    "number for a bool": json.dumps(play("u1", 1, shuffle=1)),
    "empty string for a long": json.dumps(play("u1", 1, ms_played="")),
    "escaped NUL": json.dumps(play("u\u0000", 1)),
    "lone surrogate": json.dumps(play("u1", 1)).replace('"u1"', '"\\ud800"'),
    "escaped unicode": json.dumps(play("Zo\u00eb \U0001f3b5", 1), ensure_ascii=True),
    "raw unicode": json.dumps(play("Zoë 🎵", 1), ensure_ascii=False),
    "nested unknown field": json.dumps(play("u1", 1, extra={"a": [1, {"b": None}]})),
    "comment": _VALID[:-1] + " /* c */}",
    "UTF-16": _VALID.encode("utf-16-le"),
    "zero bytes": b"{\x00}\x00",
    "empty object": "{}",
    "just a brace": "{",
    "array": "[" + _VALID + "]",
}


def test_the_fast_path_changes_no_outcome(spark_session):
    """Every odd play (and a valid one after each) ends as it does through from_json alone."""
    messages = []
    for value in ODD_PLAYS.values():
        messages += [(PLAYS, value), (PLAYS, play("ok", len(messages)))]
    fast, slow = (consume(spark_session, messages, fast_json=f) for f in (True, False))
    assert rows_of(fast, PLAYS) == rows_of(slow, PLAYS)
    assert fast.dead_letters.to_pylist() == slow.dead_letters.to_pylist()
    assert len(rows_of(fast, PLAYS)) > len(ODD_PLAYS)  # some odd ones are valid plays


def _near_plain_plays() -> list[str]:
    """Plays in and just outside the shape the fast path reads with its plain scan (our producer's):
    each field with each odd value, other spacing, and seeded one-character edits of a valid play."""
    base = play("u1", 1)
    odd = [None, True, False, 0, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 10**18, 10**19, 1.5, "",
           "Zoë", 'a"b', "a\\b", "123", "true", [], {}]
    values = [json.dumps({**base, field: value}, ensure_ascii=ascii)
              for field in [*base, "x", "User_Id"] for value in odd for ascii in (True, False)]
    # JSON texts Python's json never writes: other number forms, bare words, escapes.
    texts = ["07", "-0", "-01", "-", "00", "1e3", "1E3", "1.0", "1x", "123456789012345678", "1234567890123456789",
             "9223372036854775808", "truex", "tru", "nul", "nulls", "True", '"\\u0041"', '"a\\/b"', "'a'", '"\t"']
    values += [json.dumps({**base, field: "@"}).replace('"@"', text) for field in base for text in texts]
    values += [json.dumps(base, separators=(",", ":")), json.dumps(base, indent="\t"),
               json.dumps(base, indent=1).replace("\n", "\r\n"), "{ }", '{"schema_version": 1}']
    edits = list('"\\{}[],:-.e0719tfn x\n\t/') + ["é", "\x00", "\x7f", "-0", "1e3", "00", "null"]
    plain, rnd = json.dumps(base), random.Random(13)
    for _ in range(300):
        k, edit = rnd.randrange(len(plain)), rnd.choice(edits)
        values.append(rnd.choice([plain[:k] + edit + plain[k:], plain[:k] + plain[k + 1:],
                                  plain[:k] + edit + plain[k + len(edit):]]))
    return values


def test_the_plain_scan_changes_no_outcome(spark_session):
    """The fast path reads plain plays without Jackson: in and just outside that shape, every
    outcome is still from_json's."""
    messages = [(PLAYS, value) for value in _near_plain_plays()]
    fast, slow = (consume(spark_session, messages, fast_json=f) for f in (True, False))
    assert rows_of(fast, PLAYS) == rows_of(slow, PLAYS)
    assert fast.dead_letters.to_pylist() == slow.dead_letters.to_pylist()
    assert len(rows_of(fast, PLAYS)) > 100 and fast.dead_letters.num_rows > 100  # both kinds in the sample


def test_the_fast_path_reads_valid_plays_and_leaves_odd_ones_to_from_json(spark_session):
    from pyspark.sql import functions as F

    values = [_VALID, json.dumps(play("Zoë 🎵", 1, shuffle=True, offline=False, extra={"a": 1}),
                                 ensure_ascii=False)] + list(ODD_PLAYS.values())
    batch = kafka_batch(spark_session, [(PLAYS, v) for v in values])
    got = batch.select(parse._fast_json(batch, contracts.PLAYS).alias("p")).collect()
    read = {i for i, row in enumerate(got) if row.p is not None}
    answered = {name for i, name in enumerate(ODD_PLAYS, start=2) if i in read}
    # Exactly what from_json reads the same way: no odd encoding, key, number or trailing text.
    assert answered == {"escaped unicode", "raw unicode", "nested unknown field", "duplicate unknown key",
                        "escaped NUL", "lone surrogate", "minus zero", "trailing newline", "empty object"}
    assert {0, 1} <= read
    assert got[1].p.user_id == "Zoë 🎵" and got[1].p.shuffle is True and got[1].p.offline is False
    assert got[0].p.played_at == 1_763_000_001_000 and got[0].p.ms_played is None and got[0].p._corrupt_record is None
