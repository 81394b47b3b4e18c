"""Every DAG imports in a fresh interpreter with no network and no database at parse time,
and has the dag_id, schedule, retries and tags we promise (shared/DESIGN.md)."""

import json
import subprocess
import sys
import textwrap

import pytest

from wrapped_dev.config import REPO_ROOT

DAGS_DIR = REPO_ROOT / "dags"
EXPECTED = {
    # dag_id: what its schedule (repr of `dag.schedule` and the timetable's type) must contain
    "spotify_ingest": "@hourly",
    "spark_consumers": "ContinuousTimetable",  # a long-lived supervision task, started again at once
    "announce_raw_plays": "ContinuousTimetable",  # RAW_PLAYS within seconds of new plays
    "dbt_build": "Asset(name='wrapped_raw_plays'",
    "weekly_wrapped": "@hourly",  # sends each user's week once it is complete in the marts
    "spotify_history_import": "None",
    "wrapped_watch": "@hourly",  # consent reminders and operator alerts
}

# Runs in a child: blocks sockets, points Airflow's DB at nowhere, parses one file.
PARSE = textwrap.dedent("""
    import json, os, socket, sys
    def refuse(*a, **k):
        raise RuntimeError("network or database touched at DAG parse time")
    socket.socket.connect = refuse
    socket.create_connection = refuse
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    out = {"errors": {k: str(v)[-2000:] for k, v in bag.import_errors.items()}, "dags": {}}
    for dag_id, dag in bag.dags.items():
        out["dags"][dag_id] = {
            "schedule": f"{dag.schedule!r} {type(dag.timetable).__name__}",
            "tags": sorted(dag.tags),
            "catchup": dag.catchup,
            "retries": {t.task_id: t.retries for t in dag.tasks},
            "callbacks": [type(dag.on_failure_callback).__name__, type(dag.on_success_callback).__name__],
        }
    print(json.dumps(out))
""")


def parse(path):
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(REPO_ROOT / ".local" / "airflow-parse"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://nobody@192.0.2.1:1/none",
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run([sys.executable, "-c", PARSE, str(path)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def parsed():
    return {path.name: parse(path) for path in sorted(DAGS_DIR.glob("*.py"))}


def test_one_file_per_dag_id():
    assert sorted(p.stem for p in DAGS_DIR.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_dag_imports_cleanly_and_follows_policy(parsed, dag_id):
    result = parsed[f"{dag_id}.py"]
    assert result["errors"] == {}
    assert list(result["dags"]) == [dag_id]
    dag = result["dags"][dag_id]
    assert EXPECTED[dag_id] in dag["schedule"], dag["schedule"]
    assert dag["tags"], "every DAG is tagged"
    assert dag["catchup"] is False
    # cosmos's producer never retries (its retry would only skip; see marts/cosmos_config.py).
    retries = {task_id: r for task_id, r in dag["retries"].items() if task_id != "dbt.dbt_producer_watcher"}
    assert retries and all(r >= 2 for r in retries.values()), dag["retries"]
    # A failing run alerts the operator once; the next successful run resolves it (weekly_wrapped.alerts).
    assert dag["callbacks"] == ["AlertOnFailure", "ResolveOnSuccess"]


@pytest.mark.parametrize("path", sorted(DAGS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_dag_files_only_use_the_task_sdk(path):
    source = path.read_text()
    assert "airflow.decorators" not in source and "airflow.models" not in source
