"""The `weekly_wrapped` DAG itself, run with `dag.test()` in a child process: a throwaway
Airflow home (SQLite metadata), Connections from AIRFLOW_CONN_* pointing at the private
warehouse database, the fake Gemini and the SMTP sink. Two runs, one e-mail per user."""

import json
import os

import pytest
from dag_runs import run_dag_test
from recap_helpers import insert_user, insert_week, make_row


def test_dag_sends_each_user_their_week_once(airflow_test_env, recap_db, db, gemini, gemini_server, mailbox, settings):
    insert_user(db, "dag-ada", "ada@example.com", "Europe/Berlin")
    insert_user(db, "dag-bob", "bob@example.com", "America/Los_Angeles")
    insert_user(db, "dag-cy", "cy@example.com", "UTC", status="unsubscribed")
    for user in ("dag-ada", "dag-bob", "dag-cy"):
        insert_week(db, make_row(user_id=user, user_week_id=f"{user}|2026-11-16"))
    env = {
        **airflow_test_env,
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

    first = run_dag_test(env, "weekly_wrapped", {"week_start": "2026-11-16"})
    assert "weekly_wrapped: {'users': 2, 'sent': 2, 'recap_gemini': 2}" in first
    assert len(list(mailbox.glob("*.eml"))) == 2

    # A rerun sends nothing new: every (user, week) is recorded in app.sent_emails.
    again = run_dag_test(env, "weekly_wrapped", {"week_start": "2026-11-16"})
    assert "weekly_wrapped: {'users': 2, 'already_sent': 2}" in again
    assert len(list(mailbox.glob("*.eml"))) == 2
    with db.cursor() as cur:
        cur.execute("select user_id, recipient from app.sent_emails order by user_id")
        assert cur.fetchall() == [("dag-ada", "ada@example.com"), ("dag-bob", "bob@example.com")]
    assert gemini_server.state.stats()["by_status"] == {"200": 2}  # no Gemini calls for weeks already sent
