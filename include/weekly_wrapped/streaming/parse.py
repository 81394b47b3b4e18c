"""Split a Kafka micro-batch into valid rows per stream and dead letters, as pure DataFrame functions.

No session, no I/O: `spark/consume_streams.py` reads Kafka, calls these, and hands
the result to `sink`. Validation follows `contracts.validate` (what the producer
enforces) strictly: a JSON number is not a string, `1.0` is not an integer.

How, and why this way (it is the consumer's hot path, ~1M rows a minute on 2 cores):
- One pass over the batch for all four topics (`check_batch`): reading Kafka is the
  costly part, so the batch is never scanned once per topic.
- Every field but string arrays is parsed typed by `from_json`. It is strict for numbers
  and booleans (a mismatch marks the record corrupt), not for strings: it quietly turns
  `123` into `"123"`. So a string value whose text could be another JSON value (a
  number, true/false, an object or array) makes its record a suspect, and only suspects
  pay for a full VARIANT parse that says what each field really was. A Spotify id that
  is all digits is such a suspect, and valid after that check. (Reading strings as
  VARIANT instead cost a third of the parse: `variant_get` builds a Cast per value.)
- String arrays (entity streams only) are parsed as VARIANT, their JSON type read with
  `schema_of_variant`.
- Only a corrupt or suspect record pays for a full VARIANT parse.
- Streams of scalar fields (plays) are read by our fast path first (`spark/udf`: a plain scan
  of the bytes for our producer's shape, else Jackson on them; from_json wraps every record in
  a Reader with an 8 KB buffer of its own).
  It answers only when its answer is certainly from_json's; everything else (a number for a
  string, duplicate keys, anything odd) it leaves to from_json, so the rules above are unchanged.
- The work is staged in plain projections so every expression runs once per row
  (Spark does not share sub-expressions between CASE branches).

Extra, unknown fields are tolerated (a tolerant reader: a newer producer may add a
field without bumping `schema_version`). Everything Postgres would reject (NUL
characters, out-of-range numbers) is dead-lettered here, so one bad message can
never fail a whole batch's transaction.
"""

from __future__ import annotations

from functools import reduce
from typing import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType, VariantType

from weekly_wrapped import contracts
from weekly_wrapped.streaming.schemas import JSON_TYPES, SPARK_TYPES

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# Epoch ms both Postgres and Spark represent: 1970-01-01 up to the end of year 9999.
TIMESTAMP_MS_MIN, TIMESTAMP_MS_MAX = 0, 253_402_300_799_999

_NUL = "\u0000"
_CORRUPT = "_corrupt_record"
_SUSPECT = "_suspect"  # a string field's text could be another JSON type: look again
_VERSION = "schema_version"
_AS_VARIANT = ("string_array",)  # a typed from_json would coerce its elements silently
# What a typed `from_json` makes of a non-string JSON value read as a string: a number's text,
# true/false, an object's or array's text. Strings that look like this are checked again.
_OTHER_JSON_TEXT = r"(?s)^(?:-?[0-9][0-9.eE+-]*|-?Infinity|NaN|true|false|[\[{].*)$"

KAFKA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp")

# The fast path (spark/udf, JsonFields.java, in the consumer's jars): Jackson on the UTF-8 bytes
# for streams of scalar fields. It answers only where its answer is from_json's; else from_json.
FAST_JSON_CLASS = "weeklywrapped.spark.JsonFields"
_FAST_TYPES = {"string": "string", "long": "long", "timestamp_ms": "long", "int": "int", "boolean": "boolean"}


def stream_column(stream: contracts.Stream) -> str:
    """The struct column of `check_batch` holding a stream's typed fields: plays, tracks, ..."""
    return stream.topic.rsplit(".", 1)[-1]


def _parse_schema(stream: contracts.Stream) -> StructType:
    """What `from_json` reads: typed numbers/booleans, VARIANT strings/arrays, and the corrupt text."""
    fields = [StructField(_VERSION, LongType())]
    for f in stream.fields:
        fields.append(StructField(f.name, VariantType() if f.type in _AS_VARIANT else SPARK_TYPES[f.type]))
    return StructType(fields + [StructField(_CORRUPT, StringType())])


def _fast_json(batch: DataFrame, stream: contracts.Stream) -> Column | None:
    """The fast path's parse of `value` for this stream (registered on the batch's session),
    with `from_json`'s struct; None for a stream with array fields (from_json reads those)."""
    if any(f.type not in _FAST_TYPES for f in stream.fields):
        return None
    name = f"wrapped_json_{stream_column(stream)}"
    batch.sparkSession.udf.registerJavaFunction(name, FAST_JSON_CLASS, _parse_schema(stream))
    spec = ",".join([f"{_VERSION}:long"] + [f"{f.name}:{_FAST_TYPES[f.type]}" for f in stream.fields])
    return F.call_function(name, F.col("value"), F.lit(spec))


def _col(k: int, name: str) -> str:
    """Per-stream working column names (`_s0_user_id`), so four streams fit in one projection."""
    return f"_s{k}_{name}"


def _json_type_check(value: Column, json_type: Column, field: contracts.Field) -> list[tuple[Column, Column]]:
    """(condition, message) pairs for a field whose JSON type is known (as `schema_of_variant` says)."""
    is_set = json_type.isNotNull() & (json_type != "VOID")  # absent and JSON null are both 'no value'
    checks = []
    if field.required:
        checks.append((~is_set, F.lit(f"missing required field '{field.name}'")))
    checks.append((is_set & ~json_type.isin(*JSON_TYPES[field.type]),
                   F.concat(F.lit(f"wrong type for '{field.name}': expected {field.type}, got "), json_type)))
    if field.type == "int":
        as_long = F.try_variant_get(value, "$", "bigint")
        checks.append((is_set & ~as_long.between(INT32_MIN, INT32_MAX),
                       F.lit(f"'{field.name}' out of int range")))
    return checks


def _first_reason(checks: list[tuple[Column, Column]], otherwise: Column) -> Column:
    """The message of the first true condition, else `otherwise`."""
    reason = otherwise
    for condition, message in reversed(checks):
        reason = F.when(condition, message).otherwise(reason)
    return reason


def _corrupt_reason(stream: contracts.Stream) -> Column:
    """Why `from_json` found a record corrupt: not a JSON object, or which field has the wrong type.

    Reads `_whole`, the full VARIANT parse that `check_batch` makes for corrupt records only.
    """
    whole = F.col("_whole")
    version = F.variant_get(whole, f"$.{_VERSION}", "variant")
    version_type = F.schema_of_variant(version)
    checks: list[tuple[Column, Column]] = [
        (whole.isNull() | ~F.schema_of_variant(whole).startswith("OBJECT"),
         F.lit("not JSON (or not a JSON object)")),
        ((version_type != "BIGINT") | (F.try_variant_get(version, "$", "bigint") != contracts.SCHEMA_VERSION),
         F.concat(F.lit("unknown schema_version "), F.to_json(version))),
    ]
    for field in stream.fields:
        if field.type not in _AS_VARIANT:
            value = F.variant_get(whole, f"$.{field.name}", "variant")
            checks += _json_type_check(value, F.schema_of_variant(value), field)[1 if field.required else 0:]
    return _first_reason(checks, F.lit("does not match the contract"))


def _suspect_reason(stream: contracts.Stream) -> Column:
    """Whether a suspect record's string fields were JSON strings: which one was not, or NULL.

    Reads `_whole`, the full VARIANT parse of the record. Its other checks have passed.
    """
    whole = F.col("_whole")
    checks: list[tuple[Column, Column]] = [
        # Parsed by from_json but not by parse_json: duplicate keys.
        (whole.isNull(), F.lit("not JSON (or not a JSON object)")),
    ]
    for field in stream.fields:
        if field.type == "string":
            value = F.variant_get(whole, f"$.{field.name}", "variant")
            checks += _json_type_check(value, F.schema_of_variant(value), field)[1 if field.required else 0:]
    return _first_reason(checks, F.lit(None).cast("string"))


def _stream_error(k: int, stream: contracts.Stream, exact: bool = False) -> Column:
    """The first reason a parsed message breaks this stream's contract, `_SUSPECT`, or NULL.
    `exact`: the stream has the column saying the fast path read the message (no suspects then)."""
    version = F.col(_col(k, _VERSION))
    checks: list[tuple[Column, Column]] = [
        # The reason is worked out in a later projection, only for these (rare) rows.
        (F.col(_col(k, _CORRUPT)).isNotNull(), F.lit(_CORRUPT)),
        (version.isNull() | (version != contracts.SCHEMA_VERSION),
         F.concat(F.lit("unknown schema_version "), F.coalesce(version.cast("string"), F.lit("(missing)")))),
    ]
    for field in stream.fields:
        value = F.col(_col(k, field.name))
        if field.type in _AS_VARIANT:
            checks += _json_type_check(value, F.col(_col(k, "type_" + field.name)), field)
        elif field.required:  # for a string: absent, JSON null, or (a suspect) another type
            checks.append((value.isNull(), F.lit(f"missing required field '{field.name}'")))
        if field.type == "timestamp_ms":
            checks.append((~value.between(TIMESTAMP_MS_MIN, TIMESTAMP_MS_MAX), F.lit(f"'{field.name}' out of range")))
        if field.type == "string":
            checks.append((F.contains(value, F.lit(_NUL)), F.lit(f"NUL character in '{field.name}'")))
        if field.type == "string_array":
            # Postgres text[] could hold a NULL element, but the contract says "list of strings".
            # Null elements joined as NUL, so one test finds both. (No `exists(x -> ...)`: a lambda
            # would keep the whole projection out of code generation.)
            checks.append((F.contains(F.array_join(value, "", _NUL), F.lit(_NUL)),
                           F.lit(f"null or NUL element in '{field.name}'")))
    if stream.topic == contracts.PLAYS_TOPIC:
        checks.append((~F.col(_col(k, "source")).isin(*contracts.PLAY_SOURCES),
                       F.lit(f"source must be one of {', '.join(contracts.PLAY_SOURCES)}")))
    # Last: a suspect breaks no other rule, so only its string fields' JSON types are left to check.
    suspects = [F.col(_col(k, f.name)).rlike(_OTHER_JSON_TEXT) for f in stream.fields if f.type == "string"]
    if suspects:
        suspect = reduce(lambda a, b: a | b, suspects)
        if exact:
            suspect = ~F.col(_col(k, "exact")) & suspect
        checks.append((suspect, F.lit(_SUSPECT)))
    error = None
    for condition, message in checks:
        error = F.when(condition, message) if error is None else error.when(condition, message)
    return error


def check_batch(batch: DataFrame, topics: Mapping[str, contracts.Stream] = contracts.STREAMS,
                fast_json: bool = True) -> DataFrame:
    """One row per Kafka message, checked against its stream's contract, in one pass.

    `batch` has the Kafka source's columns (topic, partition, offset, value, ...);
    `topics` maps each Kafka topic name to its stream (tests use unique topic names).
    Output: kafka_topic, kafka_partition, kafka_offset, kafka_timestamp; `error`
    (NULL when valid); `payload` (the text, kept only for invalid messages); and per
    stream a struct column (`plays`, `tracks`, ...) with its typed fields, set only for
    that stream's valid messages. A message of any other topic is an error.
    `fast_json`: parse scalar-only streams with the fast path first (the consumer's jars hold it);
    the result is the same either way, only slower without.
    """
    max_bytes = contracts.MAX_MESSAGE_BYTES
    streams = list(topics.items())
    utf8 = F.is_valid_utf8("value")
    # Which stream a message is, as a number: the topic name is compared once per message, not at
    # every branch below (~20 string comparisons a row; in async-profiler, string comparisons
    # fell from 8.8% to 6.0% of the Spark tasks' samples).
    stream_number = reduce(lambda found, k: found.when(F.col("topic") == streams[k][0], F.lit(k)),
                           range(1, len(streams)), F.when(F.col("topic") == streams[0][0], F.lit(0)))
    df = batch.select(
        F.col("topic").alias("kafka_topic"),
        stream_number.alias("_stream"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.octet_length("value").alias("_size"),
        utf8.alias("_utf8"),
        F.when(utf8, F.col("value").cast("string")).otherwise(F.make_valid_utf8("value")).alias("payload"),
        "value",  # the bytes, for the fast path
    )
    parsable = (F.col("_size") <= max_bytes) & F.col("_utf8")
    fast = {k: _fast_json(batch, stream) for k, (_, stream) in enumerate(streams)} if fast_json else {}
    fast = {k: parse for k, parse in fast.items() if parse is not None}
    df = df.select("*", *[
        F.when((F.col("_stream") == k) & parsable, parse).alias(_col(k, "fast"))
        for k, parse in fast.items()
    ])
    parsed = []
    for k, (_, stream) in enumerate(streams):
        json = F.from_json("payload", _parse_schema(stream), {"columnNameOfCorruptRecord": _CORRUPT})
        if k in fast:
            json = F.coalesce(F.col(_col(k, "fast")), json)  # from_json only where the fast path says null
        parsed.append(F.when((F.col("_stream") == k) & parsable, json).alias(_col(k, "json")))
    df = df.select("*", *parsed)
    df = df.select("*", *[
        F.schema_of_variant(f"{_col(k, 'json')}.{f.name}").alias(_col(k, "type_" + f.name))
        for k, (_, stream) in enumerate(streams) for f in stream.fields if f.type in _AS_VARIANT
    ])
    # Typed values replace the parsed structs: a narrow row (<= spark.sql.codegen.maxFields
    # fields) keeps the following projections in whole-stage code generation.
    typed = []
    for k, (_, stream) in enumerate(streams):
        parsed = _col(k, "json")
        typed += [F.col(f"{parsed}.{_VERSION}").alias(_col(k, _VERSION)),
                  F.col(f"{parsed}.{_CORRUPT}").alias(_col(k, _CORRUPT))]
        for f in stream.fields:
            raw = F.col(f"{parsed}.{f.name}")
            if f.type in _AS_VARIANT:  # read only when the JSON type is right: a failed cast is slow
                raw = F.when(F.col(_col(k, "type_" + f.name)).isin(*JSON_TYPES[f.type]),
                             F.variant_get(raw, "$", SPARK_TYPES[f.type].simpleString()))
            typed.append(raw.alias(_col(k, f.name)))
        if k in fast:  # read by the fast path: its strings were JSON strings, no suspects
            typed.append(F.col(_col(k, "fast")).isNotNull().alias(_col(k, "exact")))
    kept = [c for c in df.columns if not c.endswith(("_json", "_fast")) and c != "value"]
    df = df.select(*kept, *typed)

    error = (
        F.when(F.col("payload").isNull(), F.lit("empty message (no value)"))
        .when(F.col("_size") > max_bytes,
              F.concat(F.lit("oversized: "), F.col("_size").cast("string"), F.lit(f" bytes > {max_bytes}")))
        .when(~F.col("_utf8"), F.lit("not UTF-8"))
    )
    for k, (_, stream) in enumerate(streams):
        error = error.when(F.col("_stream") == k, _stream_error(k, stream, exact=k in fast))
    error = error.otherwise(F.concat(F.lit("unknown topic "), F.col("kafka_topic")))
    df = df.select("*", error.alias("_error"))
    # The full parse, for corrupt and suspect records only. As its own column: inside the CASE
    # below, Spark would hoist this common sub-expression and parse every message a second time.
    corrupt, suspect = F.col("_error") == _CORRUPT, F.col("_error") == _SUSPECT
    df = df.select("*", F.when(corrupt | suspect, F.try_parse_json("payload")).alias("_whole"))
    error = F.when(F.col("_error").isNull() | ~F.col("_error").isin(_CORRUPT, _SUSPECT), F.col("_error"))
    for k, (_, stream) in enumerate(streams):
        error = (error.when((F.col("_stream") == k) & corrupt, _corrupt_reason(stream))
                 .when(F.col("_stream") == k, _suspect_reason(stream)))
    df = df.select("*", error.alias("error"))

    valid = F.col("error").isNull()
    return df.select(
        *KAFKA_COLUMNS,
        "error",
        # Postgres text cannot hold NUL; an oversized payload is kept only as its head.
        F.when(~valid, F.replace(F.substring("payload", 1, max_bytes), F.lit(_NUL), F.lit("\ufffd"))).alias("payload"),
        *[
            F.when(valid & (F.col("_stream") == k),
                   F.struct(*[F.col(_col(k, f.name)).alias(f.name) for f in stream.fields]))
            .alias(stream_column(stream))
            for k, (_, stream) in enumerate(streams)
        ],
    )


def for_sink(checked: DataFrame, topics: Mapping[str, contracts.Stream]) -> DataFrame:
    """`check_batch`'s result as the sink takes it, in one piece (one Spark job per batch):
    Kafka position, error, payload, and per stream its fields in `sink.stage_columns` order,
    with string arrays as JSON text (Arrow's CSV writer, the COPY path, has no list type)."""
    structs = []
    for stream in topics.values():
        column = stream_column(stream)
        fields = [
            (F.to_json(F.col(f"{column}.{f.name}")) if f.type == "string_array" else F.col(f"{column}.{f.name}"))
            .alias(f.name)
            for f in stream.fields
        ]
        structs.append(F.when(F.col(column).isNotNull(), F.struct(*fields)).alias(column))
    return checked.select("kafka_topic", "kafka_partition", "kafka_offset", "error", "payload", *structs)
