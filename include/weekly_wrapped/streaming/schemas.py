"""Spark schemas for the four streams, derived from `weekly_wrapped.contracts`.

Nothing here lists a field by hand: the producer validates against the same
`contracts.STREAMS`, so adding a field there changes both ends at once.
"""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DataType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from weekly_wrapped import contracts

# Contract type -> the Spark type a valid value is read as. Timestamps stay epoch
# milliseconds (as on the wire); Postgres turns them into timestamptz exactly.
SPARK_TYPES: dict[str, DataType] = {
    "string": StringType(),
    "long": LongType(),
    "int": IntegerType(),
    "boolean": BooleanType(),
    "string_array": ArrayType(StringType()),  # no null elements: parse rejects them
    "timestamp_ms": LongType(),
}

# Contract type -> what `schema_of_variant` says about a JSON value of that type.
# JSON numbers without a fraction or exponent are BIGINT; an empty array is ARRAY<VOID>.
JSON_TYPES: dict[str, tuple[str, ...]] = {
    "string": ("STRING",),
    "long": ("BIGINT",),
    "int": ("BIGINT",),
    "boolean": ("BOOLEAN",),
    "string_array": ("ARRAY<STRING>", "ARRAY<VOID>"),
    "timestamp_ms": ("BIGINT",),
}

# Where each parsed row came from; kept on raw.plays and used for end offsets.
KAFKA_FIELDS = (
    StructField("kafka_topic", StringType(), nullable=False),
    StructField("kafka_partition", IntegerType(), nullable=False),
    StructField("kafka_offset", LongType(), nullable=False),
)

# What the `kafka` source gives every micro-batch.
KAFKA_SOURCE_SCHEMA = StructType(
    [
        StructField("key", BinaryType()),
        StructField("value", BinaryType()),
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("timestamp", TimestampType()),
        StructField("timestampType", IntegerType()),
    ]
)


def value_schema(stream: contracts.Stream) -> StructType:
    """The message value as the contract defines it (`schema_version` first)."""
    return StructType(
        [StructField("schema_version", IntegerType(), nullable=False)]
        + [StructField(f.name, SPARK_TYPES[f.type], nullable=not f.required) for f in stream.fields]
    )


def row_schema(stream: contracts.Stream) -> StructType:
    """A valid message as `parse.valid_rows` returns it: the contract's fields, then its Kafka position."""
    fields = [StructField(f.name, SPARK_TYPES[f.type], nullable=not f.required) for f in stream.fields]
    return StructType(fields + list(KAFKA_FIELDS))


DEAD_LETTER_SCHEMA = StructType(
    [
        StructField("topic", StringType(), nullable=False),
        StructField("partition", IntegerType(), nullable=False),
        StructField("offset", LongType(), nullable=False),
        StructField("payload", StringType()),
        StructField("error", StringType(), nullable=False),
    ]
)
