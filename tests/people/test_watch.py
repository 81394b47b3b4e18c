"""Consent that lasts, and the operator hears about trouble, once per problem.

- The consent reminder (two weeks before the 6-month token ends) and the "reconnect" notice
  (needs_reauth) are each sent once, however often the hourly check runs; reconnecting re-arms
  them; only confirmed addresses get them.
- An alert goes to the operator once per problem (a failing DAG twice, a stale poll twice: one
  e-mail); a resolved problem that comes back alerts again.

E-mails go through the real SMTP sink (`mailbox`); the data lives in a database of this module's
own (the hourly checks look at every user, so no other test's users may be there).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from tests.support import unique
from tests.support.postgres import private_database

from weekly_wrapped import alerts
from weekly_wrapped.users import consent, links
from weekly_wrapped.users.consent import ConsentState

ADMIN = "operator@localhost"
PUBLIC_URL = "http://wrapped.test"
LINK_SECRET = "watch-test-link-secret"
NOW = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def watch_db(postgres):
    with private_database(postgres.dsn, "wrapped_watch_test", schema=True) as (_, dsn):
        yield dsn


@pytest.fixture
def db(watch_db):
    """An autocommit connection to the module's database; empties the tables the checks read after each test."""
    conn = psycopg2.connect(watch_db)
    conn.autocommit = True
    yield conn
    with conn.cursor() as cur:
        cur.execute("truncate app.alerts, app.ingest_outcomes, app.users cascade")
    conn.close()


def add_user(conn, *, consent_at: datetime | None, status: str = "active", confirmed: bool = True,
             created_at: datetime | None = None) -> tuple[str, str]:
    user_id = unique("watch")
    email = f"{user_id}@example.com"
    with conn.cursor() as cur:
        cur.execute(
            "insert into app.users (user_id, display_name, email, time_zone, refresh_token_encrypted, consent_at, "
            "status, email_confirmed_at, created_at) values (%s, 'Ada', %s, 'UTC', 'token', %s, %s, %s, %s)",
            (user_id, email, consent_at, status, consent_at if confirmed else None,
             created_at or consent_at or NOW))
    return user_id, email


# --- pure: who is due ---------------------------------------------------------------------------

def state(**overrides) -> ConsentState:
    values = dict(user_id="u", display_name=None, email="u@example.com", status="active",
                  consent_at=datetime(2026, 6, 20, 12, 0, tzinfo=timezone.utc),
                  consent_reminder_sent_at=None, reauth_notice_sent_at=None)
    return ConsentState(**{**values, **overrides})


def test_the_token_ends_six_months_after_consent():
    assert consent.token_expires_at(datetime(2026, 6, 20, 12, tzinfo=timezone.utc)) == \
        datetime(2026, 12, 20, 12, tzinfo=timezone.utc)
    end_of_august = datetime(2026, 8, 31, tzinfo=timezone.utc)
    assert consent.add_months(end_of_august, 6) == datetime(2027, 2, 28, tzinfo=timezone.utc)


def test_the_reminder_is_due_in_the_last_two_weeks_once_per_consent():
    user = state()  # expires 2026-12-20 12:00; reminders from 2026-12-06 12:00
    assert not consent.reminder_due(user, datetime(2026, 12, 6, 11, 59, tzinfo=timezone.utc))
    assert consent.reminder_due(user, datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc))
    assert not consent.reminder_due(user, datetime(2026, 12, 20, 12, 0, tzinfo=timezone.utc)), "expired: reauth's turn"
    reminded = state(consent_reminder_sent_at=datetime(2026, 12, 7, tzinfo=timezone.utc))
    assert not consent.reminder_due(reminded, datetime(2026, 12, 8, tzinfo=timezone.utc))
    # Reconnected after the reminder: the old reminder no longer counts.
    renewed = state(consent_at=datetime(2026, 12, 10, tzinfo=timezone.utc),
                    consent_reminder_sent_at=datetime(2026, 12, 7, tzinfo=timezone.utc))
    assert consent.reminder_due(renewed, datetime(2027, 5, 28, tzinfo=timezone.utc))
    assert not consent.reminder_due(state(status="needs_reauth"), datetime(2026, 12, 8, tzinfo=timezone.utc))


def test_the_reconnect_notice_is_due_once_per_consent():
    now = datetime(2026, 12, 8, tzinfo=timezone.utc)
    assert consent.reauth_notice_due(state(status="needs_reauth"), now)
    assert not consent.reauth_notice_due(state(status="active"), now)
    told = state(status="needs_reauth", reauth_notice_sent_at=datetime(2026, 12, 7, tzinfo=timezone.utc))
    assert not consent.reauth_notice_due(told, now)
    again = state(status="needs_reauth", consent_at=datetime(2026, 12, 7, 12, tzinfo=timezone.utc),
                  reauth_notice_sent_at=datetime(2026, 12, 7, tzinfo=timezone.utc))
    assert consent.reauth_notice_due(again, now)


# --- consent e-mails through the sink -------------------------------------------------------------

def test_the_consent_reminder_is_sent_once_and_again_after_reconnecting(db, watch_db, mailbox):
    now = datetime.now(timezone.utc)
    # Consented 6 months minus 10 days ago: the token ends in 10 days.
    ada, ada_email = add_user(db, consent_at=consent.add_months(now, -6) + timedelta(days=10))
    _, unconfirmed = add_user(db, consent_at=consent.add_months(now, -6) + timedelta(days=10), confirmed=False)
    _, fresh = add_user(db, consent_at=now - timedelta(days=30))

    first = consent.send_due_notices(watch_db, PUBLIC_URL, LINK_SECRET)
    second = consent.send_due_notices(watch_db, PUBLIC_URL, LINK_SECRET)  # the next hour, or a retry

    assert first["reminders"] == 1 and second["reminders"] == 0
    (reminder,) = mailbox.to(ada_email)
    assert "reconnect Spotify before" in reminder["Subject"]
    # Her own reconnect link: no invite code asked, only her Spotify account can be connected.
    link = re.search(rf"{PUBLIC_URL}/wrapped/connect\?reconnect=(\S+)", reminder.get_body(("plain",)).get_content())
    assert link and links.verify(LINK_SECRET, "reconnect", link.group(1)) == {"user_id": ada}
    assert not mailbox.to(unconfirmed) and not mailbox.to(fresh)

    # Ada reconnects (a new consent): nothing now, and a reminder again 6 months later.
    with db.cursor() as cur:
        cur.execute("update app.users set consent_at = clock_timestamp() where user_id = %s", (ada,))
    assert consent.send_due_notices(watch_db, PUBLIC_URL, LINK_SECRET)["reminders"] == 0
    later = consent.add_months(now, 6) - timedelta(days=10)
    assert consent.send_due_notices(watch_db, PUBLIC_URL, LINK_SECRET, now=later)["reminders"] == 1
    assert consent.send_due_notices(watch_db, PUBLIC_URL, LINK_SECRET, now=later + timedelta(hours=1))["reminders"] == 0
    assert len(mailbox.to(ada_email)) == 2


def test_the_reconnect_notice_is_sent_once_not_every_hour(db, watch_db, mailbox):
    now = datetime.now(timezone.utc)
    bob, bob_email = add_user(db, consent_at=now - timedelta(days=200), status="needs_reauth")
    for _ in range(3):
        consent.send_due_notices(watch_db, PUBLIC_URL, LINK_SECRET)
    (notice,) = mailbox.to(bob_email)
    assert notice["Subject"] == "Weekly Wrapped: please reconnect Spotify"
    assert f"{PUBLIC_URL}/wrapped/connect" in notice.get_body(("plain",)).get_content()

    # Bob reconnects, later loses access again: one more notice.
    with db.cursor() as cur:
        cur.execute("update app.users set consent_at = now(), status = 'active' where user_id = %s", (bob,))
    consent.send_due_notices(watch_db, PUBLIC_URL, LINK_SECRET)
    with db.cursor() as cur:
        cur.execute("update app.users set status = 'needs_reauth' where user_id = %s", (bob,))
    consent.send_due_notices(watch_db, PUBLIC_URL, LINK_SECRET)
    consent.send_due_notices(watch_db, PUBLIC_URL, LINK_SECRET)
    assert len(mailbox.to(bob_email)) == 2


def test_a_notice_that_surely_failed_is_sent_by_the_next_run(db, watch_db, mailbox):
    _, email = add_user(db, consent_at=datetime.now(timezone.utc) - timedelta(days=200), status="needs_reauth")

    def server_down(**_):
        raise ConnectionRefusedError("SMTP server down")

    with pytest.raises(RuntimeError, match="1 consent notice"):
        consent.send_due_notices(watch_db, PUBLIC_URL, LINK_SECRET, send=server_down)
    assert consent.send_due_notices(watch_db, PUBLIC_URL, LINK_SECRET)["reauth_notices"] == 1
    assert len(mailbox.to(email)) == 1


# --- operator alerts --------------------------------------------------------------------------------

@pytest.fixture
def airflow_env(monkeypatch, watch_db, mailbox):
    """What a DAG's callback reads: postgres_default (the module's database), the admin address."""
    params = dict(p.split("=", 1) for p in watch_db.split())
    monkeypatch.setenv("AIRFLOW_CONN_POSTGRES_DEFAULT", json.dumps({
        "conn_type": "postgres", "host": params["host"], "port": int(params["port"]), "schema": params["dbname"],
        "login": params["user"], "password": params.get("password", "")}))
    monkeypatch.setenv("AIRFLOW_VAR_WRAPPED_ADMIN_EMAIL", ADMIN)
    return mailbox


def dag_run_context(dag_id: str, run_id: str) -> dict:
    from airflow.sdk import DAG

    return {"dag": DAG(dag_id=dag_id, schedule=None), "run_id": run_id, "reason": "task_failure"}


def alert_rows(conn) -> dict:
    with conn.cursor() as cur:
        cur.execute("select problem_key, last_mailed_at is not null, resolved_at is not null from app.alerts")
        return {key: (mailed, resolved) for key, mailed, resolved in cur.fetchall()}


def test_a_dag_failing_twice_is_one_alert_and_again_after_a_success(db, airflow_env):
    from weekly_wrapped.airflow.alerting import AlertOnFailure, ResolveOnSuccess

    mailbox = airflow_env
    AlertOnFailure()(dag_run_context("spotify_ingest", "scheduled__2026-12-04T08:00"))
    AlertOnFailure()(dag_run_context("spotify_ingest", "scheduled__2026-12-04T09:00"))  # still failing an hour later
    (alert,) = mailbox.to(ADMIN)
    assert alert["Subject"] == "Weekly Wrapped alert: dag_failed:spotify_ingest"
    assert "scheduled__2026-12-04T08:00" in alert.get_body(("plain",)).get_content()

    ResolveOnSuccess()(dag_run_context("spotify_ingest", "scheduled__2026-12-04T10:00"))
    assert alert_rows(db) == {"dag_failed:spotify_ingest": (True, True)}
    AlertOnFailure()(dag_run_context("spotify_ingest", "scheduled__2026-12-05T03:00"))  # it comes back
    assert len(mailbox.to(ADMIN)) == 2
    assert "scheduled__2026-12-05T03:00" in mailbox.to(ADMIN)[-1].get_body(("plain",)).get_content()


def test_a_stale_poll_twice_is_one_alert_resolved_by_a_poll_and_again_later(db, watch_db, mailbox):
    ada, _ = add_user(db, consent_at=NOW - timedelta(days=20), created_at=NOW - timedelta(days=20))
    with db.cursor() as cur:
        cur.execute("insert into app.ingest_outcomes (user_id, outcome, plays, created_at) values (%s, 'ok', 3, %s)",
                    (ada, NOW - timedelta(hours=8)))
        cur.execute("insert into app.ingest_outcomes (user_id, outcome, reason, created_at) "
                    "values (%s, 'failed', 'Kafka unreachable', %s)", (ada, NOW - timedelta(hours=1)))

    assert [p.key for p in alerts.check_stale_polls(watch_db, ADMIN, 6, now=NOW)] == [f"stale_poll:{ada}"]
    alerts.check_stale_polls(watch_db, ADMIN, 6, now=NOW + timedelta(hours=1))
    (alert,) = mailbox.to(ADMIN)
    assert ada in alert["Subject"] and "Kafka unreachable" in alert.get_body(("plain",)).get_content()

    with db.cursor() as cur:  # polled again
        cur.execute("insert into app.ingest_outcomes (user_id, outcome, plays, created_at) values (%s, 'ok', 1, %s)",
                    (ada, NOW + timedelta(hours=2)))
    assert alerts.check_stale_polls(watch_db, ADMIN, 6, now=NOW + timedelta(hours=3)) == []
    assert alert_rows(db)[f"stale_poll:{ada}"] == (True, True)
    assert len(mailbox.to(ADMIN)) == 1

    alerts.check_stale_polls(watch_db, ADMIN, 6, now=NOW + timedelta(hours=9))  # stale again
    alerts.check_stale_polls(watch_db, ADMIN, 6, now=NOW + timedelta(hours=10))
    assert len(mailbox.to(ADMIN)) == 2


def test_new_problems_of_one_check_share_one_e_mail_and_no_admin_means_no_e_mail(db, watch_db, mailbox):
    for _ in range(3):
        add_user(db, consent_at=NOW - timedelta(days=20), created_at=NOW - timedelta(days=20))
    assert len(alerts.check_stale_polls(watch_db, "", 6, now=NOW)) == 3
    assert mailbox.messages() == []  # recorded, not mailed: nobody to tell
    alerts.check_stale_polls(watch_db, ADMIN, 6, now=NOW)  # an operator address is set later
    (alert,) = mailbox.to(ADMIN)
    assert "3 problems" in alert["Subject"]


def test_a_consumer_that_keeps_dying_is_one_alert(db, watch_db, mailbox):
    now = datetime.now(timezone.utc)
    assert alerts.check_consumer(watch_db, ADMIN, [now.timestamp() - 3000], now=now) == []  # one restart: fine
    deaths = [now.timestamp() - 3000, now.timestamp() - 600]
    alerts.check_consumer(watch_db, ADMIN, deaths, now=now)
    alerts.check_consumer(watch_db, ADMIN, deaths, now=now + timedelta(minutes=60))
    (alert,) = mailbox.to(ADMIN)
    assert alert["Subject"] == "Weekly Wrapped alert: consumer:dying"
    assert "consumer died 2 times" in alert.get_body(("plain",)).get_content()
    alerts.check_consumer(watch_db, ADMIN, deaths, now=now + timedelta(hours=3))  # quiet since: resolved
    assert alert_rows(db)["consumer:dying"] == (True, True)


def test_users_left_out_of_the_weekly_send_are_one_alert_each(db, watch_db, mailbox):
    now = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)  # the week of 2026-11-16 ended ~2 days ago
    outcomes = [{"user_id": "ada", "week_start": "2026-11-16", "status": "failed", "error": "SMTPDataError: 554"},
                {"user_id": "bob", "week_start": "2026-11-16", "status": "sent"}]
    not_ready = [{"user_id": "cy", "week_start": "2026-11-16", "reason": "not_polled_since_week_end"},
                 {"user_id": "dee", "week_start": "2026-11-23", "reason": "marts_not_rebuilt"}]  # not over yet
    problems = alerts.check_recap_send(watch_db, ADMIN, outcomes, not_ready, now=now)
    assert sorted(p.key for p in problems) == ["recap_left_out:ada:2026-11-16", "recap_left_out:cy:2026-11-16"]
    alerts.check_recap_send(watch_db, ADMIN, outcomes, not_ready, now=now + timedelta(hours=1))
    (alert,) = mailbox.to(ADMIN)
    assert "2 problems" in alert["Subject"]
    # The next run sends both: resolved, nothing mailed.
    alerts.check_recap_send(watch_db, ADMIN, [], [], now=now + timedelta(hours=2))
    assert all(resolved for _, resolved in alert_rows(db).values())
    assert len(mailbox.to(ADMIN)) == 1


# --- the hourly DAG wires it all ------------------------------------------------------------------

def test_the_wrapped_watch_dag_sends_notices_and_alerts(db, watch_db, mailbox, airflow_test_env, settings, tmp_path):
    """One `dag.test()` run of wrapped_watch (child process, real Airflow): the reconnect notice,
    a stale-poll alert and a consumer alert (the supervisor's record of two recent deaths)."""
    import os
    import time
    from dataclasses import replace

    from dag_runs import run_dag_test

    from weekly_wrapped.streaming import supervisor
    from wrapped_dev.stack.env import connections, variables

    now = datetime.now(timezone.utc)
    _, reauth_email = add_user(db, consent_at=now - timedelta(days=200), status="needs_reauth")
    stale, _ = add_user(db, consent_at=now - timedelta(days=20), created_at=now - timedelta(days=20))
    private = replace(settings, state_dir=tmp_path / "state", pg_database=db.info.dbname)
    private.consumer.work_dir.mkdir(parents=True)
    supervisor._write_state(private.consumer, {"deaths": [{"pid": 1, "at": time.time() - 1200},
                                                          {"pid": 2, "at": time.time() - 300}]})
    env = {**airflow_test_env, **connections(private), **variables(private),
           "AIRFLOW_CONN_SMTP_DEFAULT": os.environ["AIRFLOW_CONN_SMTP_DEFAULT"],  # the sink
           "AIRFLOW_VAR_WRAPPED_ADMIN_EMAIL": ADMIN, "AIRFLOW_VAR_WRAPPED_PUBLIC_URL": PUBLIC_URL}

    run_dag_test(env, "wrapped_watch")

    assert len(mailbox.to(reauth_email)) == 1
    subjects = [str(m["Subject"]) for m in mailbox.to(ADMIN)]
    assert len(subjects) == 2, subjects
    assert sorted(subjects) == ["Weekly Wrapped alert: consumer:dying", f"Weekly Wrapped alert: stale_poll:{stale}"]


PROBE_DAG = '''
from datetime import datetime, timezone
from airflow.sdk import dag, task
from weekly_wrapped.airflow.alerting import AlertOnFailure, ResolveOnSuccess

@dag(dag_id="failing_probe", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False,
     on_failure_callback=AlertOnFailure(), on_success_callback=ResolveOnSuccess())
def failing_probe():
    @task(retries=0)
    def boom():
        raise RuntimeError("probe failure")
    boom()

failing_probe()
'''

RUN_PROBE = """
import sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
print("DAG_RUN_STATE", bag.dags["failing_probe"].test().state)
"""


def test_a_real_dag_run_failing_twice_alerts_once(db, airflow_env, airflow_test_env, tmp_path):
    """Airflow itself calls the notifier when a run fails (`dag.test()` in a child process, as the
    Dag processor would): two failed runs, one e-mail."""
    import os
    import subprocess
    import sys

    mailbox = airflow_env
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "failing_probe.py").write_text(PROBE_DAG)
    env = {**airflow_test_env, "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           **{k: os.environ[k] for k in ("AIRFLOW_CONN_POSTGRES_DEFAULT", "AIRFLOW_CONN_SMTP_DEFAULT",
                                         "AIRFLOW_VAR_WRAPPED_ADMIN_EMAIL")}}
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", RUN_PROBE, str(dags)], env=env, capture_output=True, text=True,
                             timeout=300)
        assert "DAG_RUN_STATE failed" in run.stdout, (run.stdout + run.stderr)[-4000:]
    (alert,) = mailbox.to(ADMIN)
    assert alert["Subject"] == "Weekly Wrapped alert: dag_failed:failing_probe"
    assert alert_rows(db) == {"dag_failed:failing_probe": (True, False)}
