"""How `parse` reads each contract field type (`weekly_wrapped.contracts.Field.type`) in Spark.

Nothing here lists a field by hand: `parse` builds its schemas from `contracts.STREAMS`,
which the producer validates against too, so adding a field there changes both ends at once.
"""

from __future__ import annotations

from pyspark.sql.types import ArrayType, BooleanType, DataType, IntegerType, LongType, StringType

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
