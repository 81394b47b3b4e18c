"""spark_consumers: keep the one streaming consumer (Kafka -> Spark -> Postgres raw.*) alive.

Every few minutes: is `spark/consume_streams.py` running, is its heartbeat (the last
`ops.consumer_batches` row) fresh, is its lag bounded? Not running -> start it detached
(no worker slot is held while it runs); lag but no progress -> restart it from its
checkpoint; keeps dying -> fail loudly with the tail of its log. The task log shows the
lag and the last heartbeat. When new plays were committed since the last announcement,
`announce_new_plays` updates the RAW_PLAYS asset, which schedules `dbt_build`.

Env: `WRAPPED_CONSUMER_SCHEDULE` (cron, default every 5 minutes).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import dag, task

from weekly_wrapped.airflow.alerting import AlertOnFailure, ResolveOnSuccess
from weekly_wrapped.airflow.assets import RAW_PLAYS

DAG_ID = Path(__file__).stem


@dag(
    dag_id=DAG_ID,
    schedule=os.getenv("WRAPPED_CONSUMER_SCHEDULE", "*/5 * * * *"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # two supervisors could start two consumers on one checkpoint
    tags=["weekly-wrapped", "spark", "kafka", "streaming"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    on_failure_callback=AlertOnFailure(),  # one e-mail to the operator per failing DAG
    on_success_callback=ResolveOnSuccess(),
    doc_md=__doc__,
)
def spark_consumers():
    @task(execution_timeout=timedelta(minutes=4))
    def keep_consumer_alive() -> dict:
        """Start or restart the consumer if needed; log its lag and heartbeat."""
        from dataclasses import asdict

        from weekly_wrapped.airflow.connections import consumer_config
        from weekly_wrapped.streaming import supervisor

        state = supervisor.ensure_running(consumer_config())
        print(state.describe())
        for partition, lag in sorted(state.lag_by_partition.items()):
            print(f"  lag {partition}: {lag}")
        return asdict(state)

    @task(inlets=[RAW_PLAYS], outlets=[RAW_PLAYS])
    def announce_new_plays(state: dict, **context) -> int:
        """Update RAW_PLAYS if plays were committed since the last event; skip otherwise."""
        from airflow.sdk.exceptions import AirflowSkipException

        from weekly_wrapped.airflow.connections import warehouse_dsn
        from weekly_wrapped.streaming.supervisor import plays_committed_since

        previous = context["inlet_events"][RAW_PLAYS]
        since = previous[-1].extra.get("committed_through") if len(previous) else None
        plays, through = plays_committed_since(warehouse_dsn(), since)
        if not plays:
            raise AirflowSkipException(f"no new plays committed since {since or 'the beginning'}")
        print(f"{plays} new plays committed since {since or 'the beginning'} (through {through})")
        context["outlet_events"][RAW_PLAYS].extra = {"committed_through": through, "new_plays": plays}
        return plays

    announce_new_plays(keep_consumer_alive())


spark_consumers()
