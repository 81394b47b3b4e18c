"""The dbt_build DAG: runs on RAW_PLAYS, announces MARTS_WRAPPED, only wires dbt_runner."""

from __future__ import annotations

from pathlib import Path

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "dbt_build.py"


def test_dbt_build_dag_wiring():
    from airflow.dag_processing.dagbag import DagBag

    from weekly_wrapped.airflow.assets import MARTS_WRAPPED, RAW_PLAYS

    bag = DagBag(str(DAG_FILE))
    assert bag.import_errors == {}
    dag = bag.dags["dbt_build"]
    assert list(dag.timetable.asset_condition.objects) == [RAW_PLAYS]
    assert dag.catchup is False and dag.max_active_runs == 1
    assert {"weekly_wrapped", "dbt"} <= set(dag.tags)
    [task] = dag.tasks
    assert task.retries >= 2
    assert task.outlets == [MARTS_WRAPPED]


def test_dag_file_only_wires():
    source = DAG_FILE.read_text()
    assert "subprocess" not in source
    imports = [line for line in source.splitlines() if line.lstrip().startswith(("from airflow", "import airflow"))]
    assert imports and all(line.strip().startswith("from airflow.sdk import") for line in imports)
