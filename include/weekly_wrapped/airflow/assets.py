"""The Airflow Assets that connect Weekly Wrapped's DAGs (declared once, here).

Producers list an asset in a task's `outlets`; consumers schedule on it.
Importing this module only imports `airflow.sdk`: safe at DAG parse time.
"""

from __future__ import annotations

from airflow.sdk import Asset

# Plays produced to the `spotify.plays` Kafka topic (by `spotify_ingest` / `spotify_history_import`).
KAFKA_PLAYS = Asset("wrapped_kafka_plays")
# `raw.plays` (and the raw metadata tables) loaded by the Spark consumer.
RAW_PLAYS = Asset("wrapped_raw_plays")
# The dbt marts (`marts.fct_plays`, `marts.wrapped_weekly`, ...) rebuilt by `dbt_build`.
MARTS_WRAPPED = Asset("wrapped_marts")
