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


def raw_plays_watermark(context) -> str | None:
    """`committed_through` of the last RAW_PLAYS event (None before the first): the commit
    time after which plays are new. Needs RAW_PLAYS among the task's inlets."""
    previous = context["inlet_events"][RAW_PLAYS]
    return previous[-1].extra.get("committed_through") if len(previous) else None


def update_raw_plays(context, since: str | None, plays: int, through: str | None) -> int:
    """Update RAW_PLAYS with the plays committed after `since`, or skip the task when there
    are none (a skipped task emits no asset event, so dbt_build is not scheduled)."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not plays:
        raise AirflowSkipException(f"no new plays committed since {since or 'the beginning'}")
    print(f"{plays} new plays committed since {since or 'the beginning'} (through {through})")
    context["outlet_events"][RAW_PLAYS].extra = {"committed_through": through, "new_plays": plays}
    return plays
