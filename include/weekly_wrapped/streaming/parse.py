"""Split a Kafka micro-batch into valid rows per stream and dead letters, as pure DataFrame functions.

No session, no I/O: `spark/consume_streams.py` reads Kafka, calls these, and hands
the results to `sink`. Validation follows `contracts.validate` (what the producer
enforces) strictly: a JSON string is not a number and `1.0` is not an integer. So
each field is parsed as VARIANT and its JSON type read with `schema_of_variant`,
because a typed `from_json` quietly turns a number into a string.

Extra, unknown fields are tolerated (a tolerant reader: a newer producer may add a
field without bumping `schema_version`). Everything Postgres would reject (NUL
characters, out-of-range integers) is dead-lettered here, so one bad message can
never fail a whole batch's transaction.

The work is staged in plain projections (size -> JSON -> JSON types -> typed values
-> error) so every expression runs once per row: the error is a chain of
conditions, and Spark does not share sub-expressions between CASE branches.
"""

from __future__ import annotations

from typing import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, VariantType

from weekly_wrapped import contracts
from weekly_wrapped.streaming.schemas import JSON_TYPES, SPARK_TYPES

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# Epoch ms both Postgres and Spark represent: 1970-01-01 up to the end of year 9999.
TIMESTAMP_MS_MIN, TIMESTAMP_MS_MAX = 0, 253_402_300_799_999

_NUL = "\u0000"
_CORRUPT = "_corrupt_record"
_VERSION = "schema_version"


def _variant_schema(stream: contracts.Stream) -> StructType:
    """Every contract field as VARIANT, plus a column that catches text that is no JSON object."""
    names = [_VERSION, *stream.field_names]
    return StructType([StructField(n, VariantType()) for n in names] + [StructField(_CORRUPT, StringType())])


def _type_col(name: str) -> str:
    return f"_type_{name}"


def _field_errors(field: contracts.Field) -> list[tuple[Column, Column]]:
    """(condition, message) pairs, in order, that make this field invalid."""
    value, json_type = F.col(field.name), F.col(_type_col(field.name))
    is_set = json_type.isNotNull() & (json_type != "VOID")  # absent and JSON null are both 'no value'
    checks: list[tuple[Column, Column]] = []
    if field.required:
        checks.append((~is_set, F.lit(f"missing required field '{field.name}'")))
    checks.append(
        (
            is_set & ~json_type.isin(*JSON_TYPES[field.type]),
            F.concat(F.lit(f"wrong type for '{field.name}': expected {field.type}, got "), json_type),
        )
    )
    if field.type == "int":
        checks.append((~value.between(INT32_MIN, INT32_MAX), F.lit(f"'{field.name}' out of int range")))
    if field.type == "timestamp_ms":
        checks.append(
            (~value.between(TIMESTAMP_MS_MIN, TIMESTAMP_MS_MAX), F.lit(f"'{field.name}' out of range"))
        )
    if field.type == "string":
        checks.append((F.contains(value, F.lit(_NUL)), F.lit(f"NUL character in '{field.name}'")))
    if field.type == "string_array":
        # Postgres text[] could hold a NULL element, but the contract says "list of strings".
        checks.append(
            (F.exists(value, lambda x: x.isNull() | F.contains(x, F.lit(_NUL))),
             F.lit(f"null or NUL element in '{field.name}'"))
        )
    return checks


def _typed_value(field: contracts.Field) -> Column:
    """The field as its Spark type, read only when its JSON type is right (a failed cast is slow)."""
    # Integers are read as bigint and range-checked by `_field_errors` before they become int.
    spark_type = "bigint" if field.type == "int" else SPARK_TYPES[field.type].simpleString()
    return F.when(
        F.col(_type_col(field.name)).isin(*JSON_TYPES[field.type]),
        F.variant_get(F.col(f"_json.{field.name}"), "$", spark_type),
    )


def check_topic(batch: DataFrame, topic: str, stream: contracts.Stream) -> DataFrame:
    """One row per message of `topic` in a Kafka batch: its typed fields, Kafka position, and error.

    `batch` has the Kafka source's columns (topic, partition, offset, value, ...).
    Output: the stream's fields (as `schemas.row_schema`), kafka_topic,
    kafka_partition, kafka_offset, kafka_timestamp, `error` (NULL when valid) and
    `payload` (the message text, kept only for invalid messages).
    """
    max_bytes = contracts.MAX_MESSAGE_BYTES
    size = F.octet_length("value")
    utf8 = F.is_valid_utf8("value")
    staged = batch.where(F.col("topic") == topic).select(
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        size.alias("_size"),
        utf8.alias("_utf8"),
        F.when(utf8, F.col("value").cast("string")).otherwise(F.make_valid_utf8("value")).alias("payload"),
    )
    parsable = (F.col("_size") <= max_bytes) & F.col("_utf8")
    staged = staged.select(
        "*",
        F.when(parsable, F.from_json("payload", _variant_schema(stream), {"columnNameOfCorruptRecord": _CORRUPT}))
        .alias("_json"),
    )
    names = [_VERSION, *stream.field_names]
    staged = staged.select("*", *[F.schema_of_variant(f"_json.{n}").alias(_type_col(n)) for n in names])
    staged = staged.select(
        "*",
        F.when(F.col(_type_col(_VERSION)) == "BIGINT", F.variant_get("_json.schema_version", "$", "bigint"))
        .alias(_VERSION),
        *[_typed_value(f).alias(f.name) for f in stream.fields],
    )

    error = (
        F.when(F.col("payload").isNull(), F.lit("empty message (no value)"))
        .when(F.col("_size") > max_bytes,
              F.concat(F.lit("oversized: "), F.col("_size").cast("string"), F.lit(f" bytes > {max_bytes}")))
        .when(~F.col("_utf8"), F.lit("not UTF-8"))
        .when(F.col(f"_json.{_CORRUPT}").isNotNull(), F.lit("not JSON (or not a JSON object)"))
        .when(
            F.col(_VERSION).isNull() | (F.col(_VERSION) != contracts.SCHEMA_VERSION),
            F.concat(F.lit("unknown schema_version "),
                     F.coalesce(F.to_json(F.col(f"_json.{_VERSION}")), F.lit("(missing)"))),
        )
    )
    for field in stream.fields:
        for condition, message in _field_errors(field):
            error = error.when(condition, message)
    if stream.topic == contracts.PLAYS_TOPIC:
        error = error.when(~F.col("source").isin(*contracts.PLAY_SOURCES),
                           F.lit(f"source must be one of {', '.join(contracts.PLAY_SOURCES)}"))

    fields = [
        F.col(f.name).cast("int").alias(f.name) if f.type == "int" else F.col(f.name)
        for f in stream.fields
    ]
    checked = staged.select(
        "*", error.alias("error")
    )
    return checked.select(
        *[F.when(F.col("error").isNull(), c).alias(f.name) for c, f in zip(fields, stream.fields)],
        "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp",
        "error",
        # Postgres text cannot hold NUL; an oversized payload is kept only as its head.
        F.when(
            F.col("error").isNotNull(),
            F.replace(F.substring("payload", 1, max_bytes), F.lit(_NUL), F.lit("\ufffd")),
        ).alias("payload"),
    )


def valid_rows(checked: DataFrame, stream: contracts.Stream) -> DataFrame:
    """The valid messages of a `check_topic` result: the contract's fields, then their Kafka position."""
    return checked.where(F.col("error").isNull()).select(
        *stream.field_names, "kafka_topic", "kafka_partition", "kafka_offset"
    )


def dead_letters(checked: DataFrame) -> DataFrame:
    """The invalid messages of a `check_topic` result, shaped as `schemas.DEAD_LETTER_SCHEMA`."""
    return checked.where(F.col("error").isNotNull()).select(
        F.col("kafka_topic").alias("topic"),
        F.col("kafka_partition").alias("partition"),
        F.col("kafka_offset").alias("offset"),
        "payload",
        "error",
    )


def split_batch(
    batch: DataFrame, topics: Mapping[str, contracts.Stream] = contracts.STREAMS
) -> tuple[dict[str, DataFrame], DataFrame]:
    """A whole Kafka batch as ({topic: valid rows}, dead letters of every topic).

    `topics` maps each Kafka topic name to its stream (tests use unique topic names);
    the consumer subscribes to exactly these, so no other topic can appear.
    """
    checked = {name: check_topic(batch, name, stream) for name, stream in topics.items()}
    valid = {name: valid_rows(df, topics[name]) for name, df in checked.items()}
    dead = None
    for df in checked.values():
        dead = dead_letters(df) if dead is None else dead.unionByName(dead_letters(df))
    return valid, dead


def for_copy(rows: DataFrame, stream: contracts.Stream) -> DataFrame:
    """Valid rows shaped for the sink's stage table: arrays as JSON text, no topic column.

    Arrow's CSV writer (the COPY path) has no list type; Postgres turns the JSON back
    into text[] in the upsert. Columns are in `sink.stage_columns(stream)` order.
    """
    fields = [F.to_json(f.name).alias(f.name) if f.type == "string_array" else F.col(f.name)
              for f in stream.fields]
    return rows.select(*fields, "kafka_partition", "kafka_offset")


def end_offsets(batch: DataFrame) -> DataFrame:
    """Per topic and partition of a Kafka batch: how many messages, and the next offset after them."""
    return batch.groupBy("topic", "partition").agg(
        F.count(F.lit(1)).alias("messages"), (F.max("offset") + 1).alias("next_offset")
    )
