"""The import DAG's task as Airflow runs it: a broken export fails at once, never retried."""

from __future__ import annotations

import json
import subprocess
import sys

from weekly_wrapped.users import accounts

from tests.support.postgres import private_database
from wrapped_dev.config import REPO_ROOT

# Calls the task's own callable, with the Connections of `env`, and reports how it ended.
_RUN_TASK = """
import sys
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import AirflowFailException
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
task = bag.dags["spotify_history_import"].get_task("import_export")
try:
    task.python_callable(params={"user_id": sys.argv[2], "path": sys.argv[3]})
    print("IMPORTED")
except AirflowFailException as e:  # Airflow fails the task without using its retries
    print("FAILED, NO RETRY:", e)
"""


def test_a_broken_export_fails_the_task_without_retries_and_names_file_and_line(
        airflow_test_env, postgres, kafka, tmp_path):
    broken = tmp_path / "Streaming_History_Audio_2026_0.json"
    broken.write_text('[\n  {"ts": "2026-11-16T08:00:00Z", "ms_played": 200000},\n  {"ts": ')  # truncated
    with private_database(postgres.dsn, "wrapped_import_dag", schema=True) as (database, dsn):
        accounts.save_user(dsn, "ZGVtby1rZXktZG8tbm90LXVzZS1pbi1wcm9kdWN0aW8=", user_id="ana", display_name=None,
                           email="ana@example.org", time_zone="UTC", refresh_token="unused")
        env = {
            **airflow_test_env,
            "AIRFLOW_CONN_POSTGRES_DEFAULT": json.dumps({
                "conn_type": "postgres", "host": postgres.host, "port": postgres.port, "schema": database,
                "login": postgres.user, "password": postgres.password}),
            "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps({"conn_type": "kafka",
                                                      "extra": {"bootstrap.servers": kafka.bootstrap}}),
        }
        result = subprocess.run([sys.executable, "-c", _RUN_TASK, str(REPO_ROOT / "dags"), "ana", str(broken)],
                                env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert "FAILED, NO RETRY: export refused:" in output, output[-4000:]
    assert f"{broken}: line 3, column 10" in output, output[-4000:]  # the file, and where it broke
