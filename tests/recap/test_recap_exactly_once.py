"""The whole recap for one user and week, on a real Postgres (a private database with the real
app schema and a wrapped_weekly stand-in), the fake Gemini through google-genai, and the SMTP
sink through Airflow's SmtpHook: sent once, however often it runs."""

import threading
from datetime import date, datetime, timezone
from email import message_from_bytes, policy

import pytest
from recap_helpers import insert_user, insert_week, make_row

from weekly_wrapped.recap import store
from weekly_wrapped.recap.job import recap_targets, send_weekly_recap

WEEK = date(2026, 11, 16)
FROM = "Weekly Wrapped <wrapped@localhost>"


@pytest.fixture
def ada(db):
    insert_user(db, "recap-ada", "ada@example.com")
    insert_week(db, make_row(user_id="recap-ada", user_week_id="recap-ada|2026-11-16"))
    return "recap-ada"


def sent_rows(db, user_id):
    with db.cursor() as cur:
        cur.execute("select week_start, recipient, message_id, subject, sent_at from app.sent_emails where user_id = %s",
                    (user_id,))
        return cur.fetchall()


def send(recap_db, user_id, gemini, week=WEEK, **kwargs):
    return send_weekly_recap(recap_db, user_id, week.isoformat(), gemini=gemini, from_addr=FROM, **kwargs)


def test_sends_once_and_records_it(recap_db, db, ada, gemini, mailbox):
    first = send(recap_db, ada, gemini)
    assert first["status"] == "sent" and first["recap_source"] == "gemini"
    second = send(recap_db, ada, gemini)
    assert second["status"] == "already_sent"

    files = list(mailbox.glob("*.eml"))
    assert len(files) == 1
    stored = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert stored["Message-ID"] == first["message_id"]
    text = stored.get_body(("plain",)).get_content()
    assert "Björk was your most-played artist" in text and "87" in text and "312.4" in text  # Gemini, grounded

    rows = sent_rows(db, ada)
    assert len(rows) == 1
    week, recipient, message_id, subject, sent_at = rows[0]
    assert (week, recipient, message_id) == (WEEK, "ada@example.com", first["message_id"])
    assert subject == "Your Weekly Wrapped: 16–22 Nov 2026" and sent_at is not None


def test_failed_send_releases_the_claim_and_the_retry_sends(recap_db, db, ada, gemini, mailbox):
    def broken(message):
        raise ConnectionError("SMTP server went away")

    with pytest.raises(ConnectionError):
        send(recap_db, ada, gemini, send=broken)
    assert sent_rows(db, ada) == []
    assert send(recap_db, ada, gemini)["status"] == "sent"
    assert len(list(mailbox.glob("*.eml"))) == 1 and len(sent_rows(db, ada)) == 1


def test_racing_workers_send_once(recap_db, db, ada, gemini, mailbox):
    """Two tries of the same (user, week) at once: the second claim waits, then sees the first."""
    from weekly_wrapped.recap.mailer import send_with_airflow_smtp

    in_send = threading.Event()
    release = threading.Event()

    def slow_send(message):
        in_send.set()
        release.wait(10)
        send_with_airflow_smtp(message)

    results = {}
    first = threading.Thread(target=lambda: results.setdefault("a", send(recap_db, ada, gemini, send=slow_send)))
    first.start()
    assert in_send.wait(10)
    second = threading.Thread(target=lambda: results.setdefault("b", send(recap_db, ada, gemini)))
    second.start()
    second.join(0.5)
    assert second.is_alive(), "the second claim must wait for the first transaction"
    release.set()
    first.join(10)
    second.join(10)
    assert sorted(r["status"] for r in results.values()) == ["already_sent", "sent"]
    assert len(list(mailbox.glob("*.eml"))) == 1


def test_gemini_down_still_sends_the_template_recap(recap_db, db, ada, gemini, gemini_server, mailbox, monkeypatch):
    import weekly_wrapped.recap.gemini as gemini_module

    real = gemini_module.generate_recap_text
    monkeypatch.setattr(gemini_module, "generate_recap_text",
                        lambda *a, **k: real(*a, **{**k, "initial_delay_s": 0.05, "max_delay_s": 0.1}))
    gemini_server.state.configure({"fail_next": 10, "fail_status": 500})
    outcome = send(recap_db, ada, gemini)
    assert outcome["status"] == "sent" and outcome["recap_source"] == "template"
    stored = message_from_bytes(next(mailbox.glob("*.eml")).read_bytes(), policy=policy.default)
    assert stored["X-Weekly-Wrapped-Recap"] == "template"


def test_no_row_or_inactive_user_sends_nothing(recap_db, db, ada, gemini, mailbox):
    assert send(recap_db, ada, gemini, week=date(2026, 11, 23))["status"] == "no_data"
    with db.cursor() as cur:
        cur.execute("update app.users set status = 'unsubscribed' where user_id = %s", (ada,))
    assert send(recap_db, ada, gemini)["status"] == "not_active"
    assert list(mailbox.glob("*.eml")) == [] and sent_rows(db, ada) == []


def test_any_day_of_the_week_means_that_weeks_monday(recap_db, db, ada, gemini, mailbox):
    outcome = send(recap_db, ada, gemini, week=date(2026, 11, 18))  # a Wednesday
    assert outcome["week_start"] == "2026-11-16" and outcome["status"] == "sent"
    assert send(recap_db, ada, gemini, week=date(2026, 11, 22))["status"] == "already_sent"  # its Sunday


def test_targets_are_active_users_with_a_row_for_their_week(recap_db, db):
    insert_user(db, "recap-berlin", "b@example.com", "Europe/Berlin")
    insert_user(db, "recap-la", "la@example.com", "America/Los_Angeles")
    insert_user(db, "recap-gone", "g@example.com", "UTC", status="unsubscribed")
    insert_user(db, "recap-quiet", "q@example.com", "UTC")  # no plays: no row, no e-mail
    for user, week in [("recap-berlin", "2026-11-16"), ("recap-la", "2026-11-09"), ("recap-la", "2026-11-16"),
                       ("recap-gone", "2026-11-16")]:
        insert_week(db, make_row(user_id=user, week_start=date.fromisoformat(week), user_week_id=f"{user}|{week}"))

    # Monday 07:00 UTC: Berlin's week of the 16th is over; in Los Angeles it is still Sunday.
    early = datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc)
    assert recap_targets(recap_db, early) == [
        {"user_id": "recap-berlin", "week_start": "2026-11-16"},
        {"user_id": "recap-la", "week_start": "2026-11-09"},
    ]
    noon = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    assert recap_targets(recap_db, noon) == [
        {"user_id": "recap-berlin", "week_start": "2026-11-16"},
        {"user_id": "recap-la", "week_start": "2026-11-16"},
    ]
    assert recap_targets(recap_db, noon, "2026-11-09") == [{"user_id": "recap-la", "week_start": "2026-11-09"}]


def test_week_row_prefers_the_marts_time_zone(recap_db, db, ada):
    import psycopg2

    # The week was computed in Berlin (the mart's row); the listener has since moved to New York.
    with db.cursor() as cur:
        cur.execute("update app.users set time_zone = 'America/New_York' where user_id = %s", (ada,))
    with psycopg2.connect(recap_db) as conn:
        row = store.week_row(conn, ada, WEEK)
    conn.close()
    assert row["time_zone"] == "Europe/Berlin" and row["email"] == "ada@example.com"
    assert row["user_status"] == "active"
