"""dbt_runner: the command, the environment and the runner (no dbt, no database)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from weekly_wrapped.marts.dbt_runner import (
    DBT_PROJECT_DIR,
    DbtError,
    Warehouse,
    dbt_command,
    dbt_env,
    default_artifacts_dir,
    default_dbt_bin,
    run_dbt,
    summarize_run_results,
    warehouse_from_connection,
)

WAREHOUSE = Warehouse("db.example", 6543, "alice", "s3cret", "wrapped")


def test_command_points_dbt_at_the_project_and_the_state_folder(tmp_path):
    artifacts = default_artifacts_dir(tmp_path)
    assert dbt_command("/venv/bin/dbt", ("build", "--select", "fct_plays"), artifacts_dir=artifacts) == [
        "/venv/bin/dbt", "build", "--select", "fct_plays",
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(tmp_path / "dbt" / "target"),
        "--log-path", str(tmp_path / "dbt" / "logs"),
    ]


def test_env_carries_the_warehouse_as_wrapped_pg_vars():
    env = dbt_env(WAREHOUSE, base={"PATH": "/bin", "WRAPPED_PG_HOST": "stale"})
    assert env["PATH"] == "/bin"
    assert {k: v for k, v in env.items() if k.startswith("WRAPPED_PG_")} == {
        "WRAPPED_PG_HOST": "db.example",
        "WRAPPED_PG_PORT": "6543",
        "WRAPPED_PG_USER": "alice",
        "WRAPPED_PG_PASSWORD": "s3cret",
        "WRAPPED_PG_DATABASE": "wrapped",
    }
    assert env["DBT_SEND_ANONYMOUS_USAGE_STATS"] == "false"


def test_warehouse_from_an_airflow_connection():
    conn = SimpleNamespace(host="pg", port=None, login="u", password="p", schema="wrapped")
    assert warehouse_from_connection(conn) == Warehouse("pg", 5432, "u", "p", "wrapped")


def test_dbt_binary_from_env_or_the_repo_venv():
    assert default_dbt_bin({"WRAPPED_DBT_BIN": "/opt/dbt"}) == Path("/opt/dbt")
    assert default_dbt_bin({}) == DBT_PROJECT_DIR.parent / ".local" / "dbt-venv" / "bin" / "dbt"


def test_status_counts_from_run_results():
    results = {"results": [{"status": "success"}, {"status": "pass"}, {"status": "pass"}]}
    assert summarize_run_results(results) == {"success": 1, "pass": 2}


def test_runner_streams_output_and_raises_with_its_tail(tmp_path):
    lines: list[str] = []
    command = [sys.executable, "-c", "print('compiling'); print('Database Error: boom'); raise SystemExit(2)"]
    with pytest.raises(DbtError) as failure:
        run_dbt(command, {}, log=lines.append, cwd=tmp_path)
    assert failure.value.returncode == 2
    assert lines == ["compiling", "Database Error: boom"]
    assert "Database Error: boom" in str(failure.value)


def test_runner_returns_status_counts(tmp_path):
    results = tmp_path / "run_results.json"
    results.write_text('{"results": [{"status": "success"}, {"status": "pass"}]}')
    assert run_dbt([sys.executable, "-c", "pass"], {}, cwd=tmp_path, run_results=results) == {
        "success": 1,
        "pass": 1,
    }
