"""The `weekly_wrapped` DAG itself, run with `dag.test()` in a child process: a throwaway
Airflow home (SQLite metadata), Connections from AIRFLOW_CONN_* pointing at the private
warehouse database, the fake Gemini and the SMTP sink. A week that is not ready waits for a
later run; reruns send nothing twice; a preview sends nothing at all."""

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from email import message_from_bytes, policy

from conftest import mark_week_complete
from dag_runs import run_dag_test
from wrapped_dev.stack.env import variables
from recap_helpers import insert_user, insert_week, make_row

# Records what dbt_build's `marts_built` task records: an event of the `wrapped_marts` asset.
_MARTS_BUILT = """
import sys
from datetime import datetime
from sqlalchemy import select
from airflow.models.asset import AssetActive, AssetEvent, AssetModel
from airflow.utils.session import create_session

with create_session() as session:
    asset = session.scalar(select(AssetModel).where(AssetModel.name == "wrapped_marts"))
    if asset is None:
        asset = AssetModel(name="wrapped_marts", uri="wrapped_marts", group="asset")
        session.add(asset)
        session.flush()
        session.add(AssetActive.for_asset(asset))
    session.add(AssetEvent(asset_id=asset.id, timestamp=datetime.fromisoformat(sys.argv[1]), extra={}))
"""


def marts_built(env: dict, at: datetime) -> None:
    result = subprocess.run([sys.executable, "-c", _MARTS_BUILT, at.isoformat()], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_dag_sends_each_ready_week_once(airflow_test_env, recap_db, db, gemini, gemini_server, mailbox, settings,
                                        tmp_path):
    insert_user(db, "dag-ada", "ada@example.com", "Europe/Berlin")
    insert_user(db, "dag-bob", "bob@example.com", "America/Los_Angeles")
    insert_user(db, "dag-cy", "cy@example.com", "UTC", status="unsubscribed")
    for user in ("dag-ada", "dag-bob", "dag-cy"):
        insert_week(db, make_row(user_id=user, user_week_id=f"{user}|2026-11-16"))
    # Ada was polled after her week ended; Bob (whose week ends 9 hours later) not yet.
    mark_week_complete(db, "dag-ada", datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc))
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
        "AIRFLOW_CONN_SMTP_DEFAULT": os.environ["AIRFLOW_CONN_SMTP_DEFAULT"],  # set by `sink`
        "WRAPPED_PREVIEW_DIR": str(tmp_path / "preview"),
        # The local stack's Variables (demo mode, its secrets), as the DAG would get them there.
        **variables(settings),
        "AIRFLOW_VAR_WRAPPED_PUBLIC_URL": "http://wrapped.test",
    }
    week = {"week_start": "2026-11-16"}

    # No dbt build recorded yet: nothing is ready.
    first = run_dag_test(env, "weekly_wrapped", week)
    assert "weekly_wrapped: {'users': 0, 'not_ready': 2}" in first
    assert "not ready: user=dag-ada week=2026-11-16 (marts_not_rebuilt)" in first

    marts_built(env, datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc))
    second = run_dag_test(env, "weekly_wrapped", week)
    assert "weekly_wrapped: {'users': 1, 'sent': 1, 'recap_gemini': 1, 'not_ready': 1}" in second
    assert "not ready: user=dag-bob week=2026-11-16 (not_polled_since_week_end)" in second
    assert len(list(mailbox.glob("*.eml"))) == 1
    # every recap carries RFC 8058 one-click unsubscribe headers (users.leaving)
    sent = message_from_bytes(next(mailbox.glob("*.eml")).read_bytes(), policy=policy.default)
    assert sent["List-Unsubscribe"].startswith("<http://wrapped.test/wrapped/account/unsubscribe?token=")
    assert sent["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # Bob is polled and dbt builds again: a later run sends his week, and only his (for Ada
    # it is a rerun: nothing new, and no Gemini call).
    mark_week_complete(db, "dag-bob", datetime(2026, 11, 23, 14, 0, tzinfo=timezone.utc))
    marts_built(env, datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc))
    third = run_dag_test(env, "weekly_wrapped", week)
    assert "weekly_wrapped: {'users': 1, 'sent': 1, 'recap_gemini': 1}" in third
    assert len(list(mailbox.glob("*.eml"))) == 2
    with db.cursor() as cur:
        cur.execute("select user_id, recipient, status from app.sent_emails order by user_id")
        assert cur.fetchall() == [("dag-ada", "ada@example.com", "sent"), ("dag-bob", "bob@example.com", "sent")]
    assert gemini_server.state.stats()["by_status"] == {"200": 2}

    # A preview renders every active user's week to HTML, sent or not, and sends nothing.
    preview = run_dag_test(env, "weekly_wrapped", {**week, "preview_only": True})
    assert "'previewed': 2" in preview
    assert sorted(p.name for p in (tmp_path / "preview").glob("*.html")) == [
        "dag-ada_2026-11-16.html", "dag-bob_2026-11-16.html"]
    assert len(list(mailbox.glob("*.eml"))) == 2
