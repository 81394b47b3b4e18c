"""The `weekly_wrapped` DAG itself, run with `dag.test()` in a child process: a throwaway
Airflow home (SQLite metadata), Connections from AIRFLOW_CONN_* pointing at the private
warehouse database, the fake Gemini and the SMTP sink. Two runs, one e-mail per user."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from recap_helpers import insert_user, insert_week, make_row

from weekly_wrapped.config import REPO_ROOT

RUN_DAG = textwrap.dedent("""
    import json, sys
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    assert not bag.import_errors, bag.import_errors
    run = bag.dags["weekly_wrapped"].test(run_conf=json.loads(sys.argv[2]))
    print("DAG_RUN_STATE", run.state)
""")


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory):
    """Environment for a child Airflow process with its own home and metadata DB."""
    home = tmp_path_factory.mktemp("airflow-home")
    dags = home / "dags"
    dags.mkdir()
    (dags / "weekly_wrapped.py").symlink_to(REPO_ROOT / "dags" / "weekly_wrapped.py")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
    }
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    return env


def run_dag(env, conf: dict) -> str:
    result = subprocess.run([sys.executable, "-c", RUN_DAG, env["AIRFLOW__CORE__DAGS_FOLDER"], json.dumps(conf)],
                            env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "DAG_RUN_STATE success" in output, output[-6000:]
    return output


def test_dag_sends_each_user_their_week_once(airflow_env, recap_db, db, gemini, gemini_server, mailbox, settings):
    insert_user(db, "dag-ada", "ada@example.com", "Europe/Berlin")
    insert_user(db, "dag-bob", "bob@example.com", "America/Los_Angeles")
    insert_user(db, "dag-cy", "cy@example.com", "UTC", status="unsubscribed")
    for user in ("dag-ada", "dag-bob", "dag-cy"):
        insert_week(db, make_row(user_id=user, user_week_id=f"{user}|2026-11-16"))
    env = {
        **airflow_env,
        "AIRFLOW_CONN_POSTGRES_DEFAULT": json.dumps({
            "conn_type": "postgres", "host": settings.pg_host, "port": settings.pg_port,
            "login": settings.pg_user, "password": settings.pg_password, "schema": db.info.dbname,
        }),
        "AIRFLOW_CONN_GEMINI_DEFAULT": json.dumps({
            "conn_type": "http", "password": gemini.api_key,
            "extra": {"model": gemini.model, "base_url": gemini.base_url},
        }),
        "AIRFLOW_CONN_SMTP_DEFAULT": os.environ["AIRFLOW_CONN_SMTP_DEFAULT"],  # set by `mailbox`
    }

    first = run_dag(env, {"week_start": "2026-11-16"})
    assert "weekly_wrapped: 2 users: {'sent': 2, 'recap_gemini': 2}" in first
    assert len(list(mailbox.glob("*.eml"))) == 2

    # A rerun sends nothing new: every (user, week) is recorded in app.sent_emails.
    again = run_dag(env, {"week_start": "2026-11-16"})
    assert "weekly_wrapped: 2 users: {'already_sent': 2}" in again
    assert len(list(mailbox.glob("*.eml"))) == 2
    with db.cursor() as cur:
        cur.execute("select user_id, recipient from app.sent_emails order by user_id")
        assert cur.fetchall() == [("dag-ada", "ada@example.com"), ("dag-bob", "bob@example.com")]
    assert gemini_server.state.stats()["by_status"] == {"200": 2}  # no Gemini calls for weeks already sent
