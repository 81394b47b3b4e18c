"""dbt_build: rebuild the dbt marts whenever the raw tables change.

Scheduled on the RAW_PLAYS asset (updated by the Spark consumer's supervisor). dbt_project/
is rendered by astronomer-cosmos in its watcher mode: `dbt.dbt_producer_watcher` runs one
`dbt build` against the warehouse of the `postgres_default` connection (dbt in its own
virtualenv), and one task per model (`dbt.<model>.run`) and per model's tests
(`dbt.<model>.test`) follows it in dbt's dependency order, failing when its model or tests
failed; a failing test skips what is built on it, as in `dbt build`. Once that build passed
(every model and test: dbt exits 0 only then), `marts_built` marks MARTS_WRAPPED updated for
the weekly recap; it does not wait for the watchers to finish mirroring the build, which
takes them another 15 s or so, one dependency level after the other.

Param `full_refresh` rebuilds the incremental `fct_plays` from scratch (`--full-refresh`).
How the DAG parses without dbt or a database: `weekly_wrapped.marts.cosmos_config`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import Param, dag, task

from weekly_wrapped.airflow.alerting import AlertOnFailure, ResolveOnSuccess
from weekly_wrapped.airflow.assets import MARTS_WRAPPED, RAW_PLAYS
from weekly_wrapped.marts.cosmos_config import FIRST_IN_LINE, PRODUCER_TASK_ID, dbt_task_group

DAG_ID = Path(__file__).stem


@dag(
    dag_id=DAG_ID,
    schedule=[RAW_PLAYS],
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # two builds of the same schemas at once would collide
    # The build, and marts_built after it, plus two watchers at a time: the watchers only mirror
    # the build in the UI (each a process that parses this DAG: 2 CPU seconds, 70 per build),
    # and more of them at once only took CPU from the build the weekly recap waits for.
    max_active_tasks=3,
    tags=["weekly-wrapped", "dbt", "marts"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    on_failure_callback=AlertOnFailure(),  # one e-mail to the operator per failing DAG
    on_success_callback=ResolveOnSuccess(),
    doc_md=__doc__,
    params={
        "full_refresh": Param(
            False,
            type="boolean",
            description="Rebuild fct_plays from scratch (dbt build --full-refresh).",
        ),
    },
)
def dbt_build():
    models_and_tests = dbt_task_group("dbt")

    @task(outlets=[MARTS_WRAPPED], priority_weight=FIRST_IN_LINE, weight_rule="absolute")
    def marts_built(params=None, outlet_events=None) -> dict:
        """Every model and test passed: announce the marts to the weekly recap."""
        extra = {"full_refresh": bool(params["full_refresh"])}
        outlet_events[MARTS_WRAPPED].extra = extra
        return extra

    models_and_tests.children[f"{models_and_tests.group_id}.{PRODUCER_TASK_ID}"] >> marts_built()


dbt_build()
