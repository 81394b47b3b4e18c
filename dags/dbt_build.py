"""dbt_build: rebuild the dbt marts whenever the raw tables change.

Scheduled on the RAW_PLAYS asset (updated by the Spark consumer's supervisor); runs
`dbt build` of dbt_project/ (models, data tests and unit tests) against the warehouse of the
`postgres_default` connection, and marks MARTS_WRAPPED updated for the weekly recap.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from weekly_wrapped.airflow.assets import MARTS_WRAPPED, RAW_PLAYS

DAG_ID = "dbt_build"


@dag(
    dag_id=DAG_ID,
    schedule=[RAW_PLAYS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # two builds of the same schemas at once would collide
    tags=["weekly_wrapped", "dbt", "marts"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
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
    @task(outlets=[MARTS_WRAPPED], execution_timeout=timedelta(minutes=30))
    def build_marts(**context) -> dict[str, int]:
        from airflow.sdk import Connection

        from weekly_wrapped.airflow.connections import WAREHOUSE_CONN_ID
        from weekly_wrapped.marts.dbt_runner import build_marts as run_dbt_build
        from weekly_wrapped.marts.dbt_runner import warehouse_from_connection

        warehouse = warehouse_from_connection(Connection.get(WAREHOUSE_CONN_ID))
        extra_args = ("--full-refresh",) if context["params"]["full_refresh"] else ()
        statuses = run_dbt_build(warehouse, extra_args=extra_args)
        context["outlet_events"][MARTS_WRAPPED].extra = {"dbt_statuses": statuses}
        return statuses

    build_marts()


dbt_build()
