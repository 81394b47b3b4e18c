"""`wrapped demo`: the whole pipeline for the demo listeners, run through Airflow.

Every stage is a DAG run triggered through Airflow's REST API and waited for, so
what ran is what a user sees in the UI. Safe to re-run: ingestion moves a cursor,
the consumer upserts, dbt rebuilds, and the recap is sent once per user and week.
"""

from __future__ import annotations

import datetime as dt
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path

import psycopg2

from weekly_wrapped.airflow_client import AirflowClient
from weekly_wrapped.config import Settings
from weekly_wrapped.stack import airflow

PIPELINE_DAGS = ("spotify_ingest", "spark_consumers", "dbt_build", "weekly_wrapped")


def demo_week_start(now: dt.datetime) -> dt.date:
    """The Monday of the last complete week before `now` (the week the demo recaps)."""
    this_monday = now.date() - dt.timedelta(days=now.weekday())
    return this_monday - dt.timedelta(days=7)


def _say(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", flush=True)


def _run_dag(client: AirflowClient, dag_id: str, timeout: float, conf: dict | None = None) -> str:
    run_id = client.trigger(dag_id, conf=conf)
    _say(f"{dag_id}: triggered {run_id}")
    state = client.wait_for_run(dag_id, run_id, timeout, on_progress=lambda s: _say(f"{dag_id}: {s}"))
    if state != "success":
        failed = "; ".join(client.failed_tasks(dag_id, run_id))
        raise RuntimeError(f"{dag_id} run {run_id} ended {state}: {failed} "
                           f"(see the task logs in the Airflow UI)")
    return run_id


def _query(settings: Settings, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.close()
    return rows


def _wait_for_consumer(settings: Settings, timeout: float) -> None:
    """Wait until the streaming consumer has committed everything Kafka holds."""
    from weekly_wrapped import supervisor

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = supervisor.status(settings)
        _say(f"consumer: running={state.running} lag={state.lag} "
             f"last batch {state.heartbeat_age_s if state.heartbeat_age_s is not None else '-'}s ago")
        if state.running and state.lag == 0 and state.heartbeat_age_s is not None:
            return
        time.sleep(5)
    raise TimeoutError("the streaming consumer did not catch up; see `wrapped logs spark-consumer`")


def _html_copy(eml: Path) -> Path | None:
    message = BytesParser(policy=policy.default).parse(eml.open("rb"))
    part = message.get_body(preferencelist=("html",))
    if part is None:
        return None
    html = eml.with_suffix(".html")
    html.write_text(part.get_content())
    return html


def _delivered(settings: Settings, week_start: dt.date) -> list[tuple[str, Path | None]]:
    """(recipient, .eml path) for every recap sent for the week."""
    sent = _query(settings, "select recipient, message_id from app.sent_emails where week_start = %s "
                            "order by recipient", (week_start,))
    files = sorted(settings.mail_dir.glob("*.eml"))
    found = []
    for recipient, message_id in sent:
        token = message_id.strip("<>")
        match = next((f for f in reversed(files) if token in f.read_text(errors="replace")), None)
        found.append((recipient, match))
    return found


def run_demo(settings: Settings, timeout: int = 900) -> int:
    from weekly_wrapped.users import onboard_demo_users

    started = time.monotonic()
    week_start = demo_week_start(dt.datetime.now(dt.timezone.utc))
    _say("onboarding the demo listeners through the (fake) Spotify consent flow")
    users = onboard_demo_users(settings)
    _say(f"onboarded {len(users)} listeners: {', '.join(users)}")

    client = AirflowClient(airflow.api_url(settings), "admin", airflow.admin_password(settings))
    for dag_id in PIPELINE_DAGS:
        client.wait_for_dag(dag_id)
        client.unpause(dag_id)

    _run_dag(client, "spotify_ingest", timeout)
    _run_dag(client, "spark_consumers", timeout)
    _wait_for_consumer(settings, timeout)
    _run_dag(client, "dbt_build", timeout)
    _run_dag(client, "weekly_wrapped", timeout, conf={"week_start": week_start.isoformat()})

    plays = _query(settings, "select count(*) from raw.plays")[0][0]
    fct = _query(settings, "select count(*) from marts.fct_plays")[0][0]
    delivered = _delivered(settings, week_start)
    print()
    print(f"Weekly Wrapped demo finished in {time.monotonic() - started:.0f}s")
    print(f"  plays ingested (raw.plays):      {plays}")
    print(f"  rows in marts.fct_plays:         {fct}")
    print(f"  recaps for the week of {week_start}: {len(delivered)}")
    for recipient, eml in delivered:
        html = _html_copy(eml) if eml else None
        print(f"    {recipient}: {eml or '(sent; file not found in ' + str(settings.mail_dir) + ')'}")
        if html:
            print(f"      open in a browser: {html}")
    print(f"  Airflow UI: {airflow.api_url(settings)}  login: admin, "
          f"password in {airflow.password_file(settings)}")
    print("  stop everything: make down")
    return 0 if delivered else 1
