"""announce_raw_plays: update the RAW_PLAYS asset (which schedules `dbt_build`) within seconds
of the streaming consumer committing new plays.

One task, started again as soon as it ends (`@continuous`, one run at a time): it checks
`ops.consumer_batches` every 2 s for plays committed after the last RAW_PLAYS event, and ends
as soon as it finds some, updating RAW_PLAYS with how many and through when; with nothing new
it ends skipped after 10 minutes (no event) and the next run carries on. Under a steady stream
it announces at most every 30 s (each announcement is a task start and a `dbt_build` run). It is apart from
`spark_consumers` so that announcing, which ends a run, never leaves the consumer unwatched.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import dag, task

from weekly_wrapped.airflow.alerting import AlertOnFailure, ResolveOnSuccess
from weekly_wrapped.airflow.assets import RAW_PLAYS, raw_plays_watermark, update_raw_plays

DAG_ID = Path(__file__).stem
WAIT_MINUTES = 10
MIN_INTERVAL_SECONDS = 30


@dag(
    dag_id=DAG_ID,
    schedule="@continuous",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # one watermark: two runs would announce the same plays twice
    tags=["weekly-wrapped", "streaming"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    on_failure_callback=AlertOnFailure(),
    on_success_callback=ResolveOnSuccess(),
    doc_md=__doc__,
)
def announce_raw_plays():
    @task(inlets=[RAW_PLAYS], outlets=[RAW_PLAYS], execution_timeout=timedelta(minutes=WAIT_MINUTES + 5))
    def announce_new_plays(**context) -> int:
        """Wait for plays committed since the last RAW_PLAYS event; update RAW_PLAYS with them."""
        import time

        from weekly_wrapped.airflow.connections import warehouse_dsn
        from weekly_wrapped.streaming.supervisor import wait_for_new_plays

        previous = context["inlet_events"][RAW_PLAYS]
        since = raw_plays_watermark(context)
        wait_seconds = float((context["dag_run"].conf or {}).get("wait_seconds", WAIT_MINUTES * 60))
        if len(previous):
            since_last = (datetime.now(timezone.utc) - previous[-1].timestamp).total_seconds()
            time.sleep(max(0.0, MIN_INTERVAL_SECONDS - since_last))
        return update_raw_plays(context, since, *wait_for_new_plays(warehouse_dsn(), since, wait_seconds))

    announce_new_plays()


announce_raw_plays()
