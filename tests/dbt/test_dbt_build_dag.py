"""The dbt_build DAG: cosmos renders one task per model and per model's tests; it runs on
RAW_PLAYS and announces MARTS_WRAPPED at the end. That it builds the marts for real, task by
task through Airflow, is the end-to-end test's part (tests/platform/test_end_to_end.py): a
second run here with dag.test() took 5-8 minutes for nothing more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weekly_wrapped.marts.manifest import RENDER_MANIFEST, dumps, parse_project, render_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = REPO_ROOT / "dags" / "dbt_build.py"


def _manifest() -> dict:
    return json.loads(RENDER_MANIFEST.read_text())


def _models() -> list[str]:
    return sorted(n["name"] for n in _manifest()["nodes"].values() if n["resource_type"] == "model")


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags["dbt_build"]


def test_render_manifest_is_what_dbt_parse_gives():
    """dbt_project/manifest.json shapes the DAG: it must follow every model, test and ref."""
    fresh = dumps(render_manifest(parse_project(log=lambda line: None)))
    assert RENDER_MANIFEST.read_text() == fresh, (
        "dbt_project/manifest.json is stale: run .local/venv/bin/python -m weekly_wrapped.marts.manifest"
    )


def test_schedule_assets_and_policy(dag):
    from weekly_wrapped.airflow.assets import MARTS_WRAPPED, RAW_PLAYS

    assert list(dag.timetable.asset_condition.objects) == [RAW_PLAYS]
    assert dag.catchup is False and dag.max_active_runs == 1
    assert {"weekly-wrapped", "dbt"} <= set(dag.tags)
    assert all(task.retries >= 2 for task in dag.tasks)
    [end] = [task for task in dag.tasks if task.outlets]
    assert end.task_id == "marts_built" and end.outlets == [MARTS_WRAPPED]
    assert end.downstream_task_ids == set()
    # everything dbt does comes before the marts are announced
    assert {t.task_id for t in dag.tasks} - {end.task_id} == set(end.get_flat_relative_ids(upstream=True))
    assert dag.params["full_refresh"] is False


def test_one_task_per_model_and_per_models_tests(dag):
    task_ids = {task.task_id for task in dag.tasks}
    models = _models()
    assert len(models) >= 19 and "wrapped_weekly" in models and "int_weekly_totals" in models
    for model in models:
        assert f"dbt.{model}.run" in task_ids
        assert f"dbt.{model}.test" in task_ids  # every model of ours has data tests
    # a test over two models (relationships) waits for both, in a task of its own
    relationships = [t for t in task_ids if t.startswith("dbt.relationships_wrapped_weekly_user_id")]
    assert len(relationships) == 1
    assert {"dbt.wrapped_weekly.run", "dbt.dim_user.run"} <= dag.get_task(relationships[0]).get_flat_relative_ids(
        upstream=True
    )


def test_tests_gate_the_downstream_models(dag):
    """As in `dbt build`: a model is built only after the tests of what it reads passed."""
    assert dag.get_task("dbt.int_weekly_totals.test").downstream_task_ids >= {
        "dbt.wrapped_weekly.run", "dbt.int_weekly_changes.run", "dbt.int_weekly_ingest_gaps.run"
    }
    assert "dbt.fct_plays.test" in dag.get_task("dbt.int_plays_localized.run").upstream_task_ids


def test_dbt_runs_from_its_venv_with_the_warehouse_connection_and_full_refresh_param(dag):
    from weekly_wrapped.airflow.connections import WAREHOUSE_CONN_ID
    from weekly_wrapped.marts.dbt_runner import default_dbt_bin

    run = dag.get_task("dbt.fct_plays.run")
    assert str(run.dbt_executable_path) == str(default_dbt_bin())
    assert run.profile_config.profile_mapping.conn_id == WAREHOUSE_CONN_ID
    assert run.profile_config.profile_mapping.profile_args["schema"] == "marts"
    assert run.full_refresh == "{{ params.full_refresh }}"
    for rendered, flags in (("True", ["--full-refresh"]), ("False", [])):  # the param, rendered
        run.full_refresh = rendered
        assert [f for f in run.add_cmd_flags() if f == "--full-refresh"] == flags
    run.full_refresh = "{{ params.full_refresh }}"
    assert "{{ var.value.get('wrapped_dbt_artifacts_dir'" in run.env["DBT_LOG_PATH"]


def test_profile_args_follow_profiles_yml(tmp_path):
    from weekly_wrapped.marts.cosmos_config import profile_args

    assert profile_args(environ={}) == {"schema": "marts", "threads": 4, "connect_timeout": 10}
    assert profile_args(environ={"WRAPPED_DBT_SCHEMA": "x", "WRAPPED_DBT_THREADS": "2"})["schema"] == "x"


def test_dag_file_only_wires():
    source = DAG_FILE.read_text()
    assert "subprocess" not in source
    # the cosmos configuration lives in weekly_wrapped.marts.cosmos_config
    assert not [line for line in source.splitlines() if line.startswith(("from cosmos", "import cosmos"))]
    imports = [line for line in source.splitlines() if line.lstrip().startswith(("from airflow", "import airflow"))]
    assert imports and all(line.strip().startswith("from airflow.sdk import") for line in imports)
