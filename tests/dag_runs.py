"""Run a DAG of ours with `dag.test()` in a child Airflow process (see the `airflow_test_env` fixture)."""

import json
import subprocess
import sys

from wrapped_dev.config import REPO_ROOT

# Runs one DAG with `dag.test()` in a child process, so Airflow's settings come from `env`.
_RUN_DAG = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
run = bag.dags[sys.argv[2]].test(run_conf=json.loads(sys.argv[3]))
print("DAG_RUN_STATE", run.state)
"""


def run_dag_test(env: dict[str, str], dag_id: str, conf: dict | None = None, timeout: float = 300) -> str:
    """`dag.test()` of one DAG file with `env`; returns the output, asserting the run succeeded."""
    dag_file = REPO_ROOT / "dags" / f"{dag_id}.py"
    result = subprocess.run([sys.executable, "-c", _RUN_DAG, str(dag_file), dag_id, json.dumps(conf or {})],
                            env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "DAG_RUN_STATE success" in output, output[-6000:]
    return output
