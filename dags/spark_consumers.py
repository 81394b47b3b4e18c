"""spark_consumers: keep the one streaming consumer (Kafka -> Spark -> Postgres raw.*) alive.

A long-lived supervision task, started again as soon as it ends (`@continuous`, one run at a
time): every 2 s it checks that `spark/consume_streams.py` runs (its lock is held) and makes
progress (heartbeat = the last `ops.consumer_batches` row, lag bounded). Dead -> started again
at once from its checkpoint (a `kill -9` is caught up in seconds, not at the next cron slot);
lag but no progress -> restarted; keeps dying -> the task fails loudly with the tail of its log.
The consumer runs detached; the task holds one worker slot for its loop.

A run watches for WRAPPED_CONSUMER_WATCH_MINUTES (default 30) and only then ends: between two
runs (the next task's start-up, seconds) nobody watches, so runs are long. Announcing new plays
(RAW_PLAYS, which schedules `dbt_build`) is `announce_raw_plays`' job, within seconds of a
commit; this task also announces what is new when it ends, in case that DAG is paused.
Why a task and not a deferrable sensor or an Asset watcher: the restart must happen where the
consumer's lock file and checkpoint are, from a process Airflow schedules and retries; a
trigger would restart it from inside the triggerer.

A manual run (the demo, `airflow dags test`) checks once (and lets a new start settle), then
announces what is new, unless its conf sets `watch_seconds`.

Env: `WRAPPED_CONSUMER_SCHEDULE` (default `@continuous`; a cron runs the same watch each slot),
`WRAPPED_CONSUMER_WATCH_MINUTES` (how long one run watches, default 30), and where the task runs:
`WRAPPED_CONSUMER_QUEUE` (Celery: a queue served only by the worker on the consumer's host) and
`WRAPPED_CONSUMER_EXECUTOR` (with several executors, e.g. `CeleryExecutor` or `LocalExecutor`
next to `KubernetesExecutor`, whose pods would take a detached consumer down when they end).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import dag, task

from weekly_wrapped.airflow.alerting import AlertOnFailure, ResolveOnSuccess
from weekly_wrapped.airflow.assets import RAW_PLAYS, raw_plays_watermark, update_raw_plays

DAG_ID = Path(__file__).stem
WATCH_MINUTES = float(os.getenv("WRAPPED_CONSUMER_WATCH_MINUTES", "30"))
# Where the supervision task runs must be where the consumer's work dir is (lock, pid, checkpoint):
# with Celery a queue only the consumer's host serves; with Kubernetes a long-lived executor.
PLACEMENT = {key: value for key, value in (("queue", os.getenv("WRAPPED_CONSUMER_QUEUE")),
                                           ("executor", os.getenv("WRAPPED_CONSUMER_EXECUTOR"))) if value}


@dag(
    dag_id=DAG_ID,
    schedule=os.getenv("WRAPPED_CONSUMER_SCHEDULE", "@continuous"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # two supervisors could start two consumers on one checkpoint
    tags=["weekly-wrapped", "spark", "kafka", "streaming"],
    # A retry comes back at once: the consumer is unwatched while the task is down.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=5)},
    on_failure_callback=AlertOnFailure(),  # one e-mail to the operator per failing DAG
    on_success_callback=ResolveOnSuccess(),
    doc_md=__doc__,
)
def spark_consumers():
    @task(inlets=[RAW_PLAYS], outlets=[RAW_PLAYS], execution_timeout=timedelta(minutes=WATCH_MINUTES + 10),
          **PLACEMENT)
    def supervise_consumer(**context) -> int:
        """Watch and restart the consumer; then update RAW_PLAYS if new plays were committed."""
        from weekly_wrapped.airflow.connections import consumer_config, warehouse_dsn
        from weekly_wrapped.streaming import supervisor

        config = consumer_config()
        watch_seconds = (context["dag_run"].conf or {}).get("watch_seconds")
        if watch_seconds is None and context["dag_run"].run_type == "manual":
            state = supervisor.ensure_running(config)  # once, and a new start settles first
        else:
            state = supervisor.supervise(config, WATCH_MINUTES * 60 if watch_seconds is None else float(watch_seconds))
        print(state.describe())
        for partition, lag in sorted(state.lag_by_partition.items()):
            print(f"  lag {partition}: {lag}")

        since = raw_plays_watermark(context)
        return update_raw_plays(context, since, *supervisor.plays_committed_since(warehouse_dsn(), since))

    supervise_consumer()


spark_consumers()
