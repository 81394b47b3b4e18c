"""The dbt_build DAG: cosmos's watcher mode runs one `dbt build` (the producer task) and
renders one task per model and per model's tests that follows it; it runs on RAW_PLAYS and
announces MARTS_WRAPPED once the build passed. That it builds the marts for real through Airflow is the
end-to-end test's part (tests/platform/test_end_to_end.py)."""

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
    # Every task retries but the producer: its retry would only skip, and until then the
    # watchers that hold the DAG's task slots keep polling for it (a deadlock; see cosmos_config).
    assert {task.task_id: task.retries for task in dag.tasks if task.retries < 2} == {"dbt.dbt_producer_watcher": 0}
    [end] = [task for task in dag.tasks if task.outlets]
    assert end.task_id == "marts_built" and end.outlets == [MARTS_WRAPPED]
    assert end.downstream_task_ids == set()
    # announced once the one `dbt build` passed (dbt exits 0 only when every model and test
    # did), not after the watchers mirrored it in the UI
    assert end.upstream_task_ids == {"dbt.dbt_producer_watcher"}
    assert dag.params["full_refresh"] is False


def test_the_build_and_its_announcement_go_before_the_watchers(dag):
    # Three slots: the build and marts_built take theirs before any watcher (the watchers of the
    # first models would otherwise fill every slot, each waiting for a build that never started;
    # marts_built would wait for all 70 to mirror the build); two watchers mirror at a time.
    assert dag.max_active_tasks == 3
    assert all(task.weight_rule == "absolute" for task in dag.tasks
               if task.task_id != "dbt.dbt_producer_watcher_done")  # an empty marker, never queued
    first = {"dbt.dbt_producer_watcher", "marts_built"}
    heaviest_watcher = max(task.priority_weight for task in dag.tasks if task.task_id not in first)
    assert min(dag.get_task(task_id).priority_weight for task_id in first) > heaviest_watcher


def test_one_build_and_one_task_per_model_and_per_models_tests(dag):
    from cosmos.operators.watcher import DbtProducerWatcherOperator

    task_ids = {task.task_id for task in dag.tasks}
    [producer] = [t for t in dag.tasks if isinstance(t, DbtProducerWatcherOperator)]
    assert producer.task_id == "dbt.dbt_producer_watcher" and producer.base_cmd == ["build"]
    models = _models()
    assert len(models) >= 19 and "wrapped_weekly" in models and "int_weekly_totals" in models
    for model in models:
        assert f"dbt.{model}.run" in task_ids
        assert f"dbt.{model}.test" in task_ids  # every model of ours has data tests
    # A test over two models (relationships) is followed by both models' test tasks, never by
    # a task of its own: cosmos records no status for such a task, which would always pass.
    assert not [t for t in task_ids if "relationships" in t]
    watched = producer.tests_per_model["model.weekly_wrapped.dim_user"]
    assert any(t.startswith("test.weekly_wrapped.relationships_wrapped_weekly_user_id") for t in watched)


def test_the_production_build_leaves_the_unit_tests_to_make_test(dag):
    """dbt's unit tests check the models' logic on fixed inputs: tests/dbt runs them
    (test_wrapped_weekly), every hourly build need not; its command excludes them."""
    producer = dag.get_task("dbt.dbt_producer_watcher")
    assert producer.exclude == "resource_type:unit_test"
    assert not [t for ts in producer.tests_per_model.values() for t in ts if t.startswith("unit_test.")]


def test_every_dbt_task_gives_way_on_the_cpu_before_it_runs(dag):
    """A build is batch work: the streaming consumer on the same machine goes first."""
    import subprocess
    import sys

    from weekly_wrapped.marts.cosmos_config import DBT_NICENESS, prepare_dbt_task

    dbt_tasks = [t for t in dag.tasks if t.task_id.startswith("dbt.") and not t.task_id.endswith("_done")]
    assert len(dbt_tasks) == 2 * len(_models()) + 1
    assert all(t._pre_execute_hook is prepare_dbt_task for t in dbt_tasks)
    # In a process of its own: the hook lowers the priority of the process that calls it (and of dbt, its child).
    niceness = subprocess.run(
        [sys.executable, "-c", "import os; from weekly_wrapped.marts.cosmos_config import give_way_on_the_cpu; "
                               "before = os.nice(0); give_way_on_the_cpu(); print(os.nice(0) - before)"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert niceness == str(DBT_NICENESS)


def test_a_dbt_task_computes_no_lineage_events_nothing_reads(dag, tmp_path):
    """cosmos parses every build's artifacts into OpenLineage events for a provider we do not
    install; the pre_execute hook turns that off on the task that runs (not on the DAG's copy)."""
    import copy
    from unittest import mock

    from weekly_wrapped.marts import cosmos_config

    producer = copy.copy(dag.get_task("dbt.dbt_producer_watcher"))
    with mock.patch("os.nice"):  # this test's own process keeps its priority
        cosmos_config.prepare_dbt_task({"task": producer})
    # the OpenLineage processor cosmos would build from the artifacts
    processor = mock.patch.object(type(producer), "_get_dbt_local_artifact_processor")
    with processor as lineage:
        assert producer.calculate_openlineage_events_completes({}, tmp_path) is False
    assert not lineage.called
    # without the hook, cosmos parses: the stand-in is what keeps it from doing so
    with processor as lineage:
        dag.get_task("dbt.dbt_producer_watcher").calculate_openlineage_events_completes({}, tmp_path)
    assert lineage.called


def test_watchers_poke_in_their_slot_rather_than_defer(dag):
    """A trigger that fires at once can get a deferred task failed (apache/airflow#72716)."""
    watchers = [t for t in dag.tasks if t.task_id.endswith((".run", ".test"))]
    assert len(watchers) == 2 * len(_models())
    assert all(t.deferrable is False and t.mode == "poke" and t.poke_interval <= 2 for t in watchers)
    producer = dag.get_task("dbt.dbt_producer_watcher")
    assert producer.priority_weight > max(t.priority_weight for t in watchers)  # a slot before they take them


def test_tests_gate_the_downstream_models(dag):
    """As in `dbt build`: a model is built only after the tests of what it reads passed."""
    assert dag.get_task("dbt.int_weekly_totals.test").downstream_task_ids >= {
        "dbt.wrapped_weekly.run", "dbt.int_weekly_changes.run", "dbt.int_weekly_ingest_gaps.run"
    }
    assert "dbt.fct_plays.test" in dag.get_task("dbt.int_plays_localized.run").upstream_task_ids


def test_dbt_runs_from_its_venv_with_the_warehouse_connection_and_full_refresh_param(dag):
    from weekly_wrapped.airflow.connections import WAREHOUSE_CONN_ID
    from weekly_wrapped.marts.dbt_runner import default_dbt_bin

    run = dag.get_task("dbt.dbt_producer_watcher")
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
