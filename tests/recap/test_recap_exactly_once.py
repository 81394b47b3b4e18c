"""The whole recap for one user and week, on a real Postgres (a private database with the real
app schema and a wrapped_weekly stand-in), the fake Gemini through google-genai, and the SMTP
sink through Airflow's SmtpHook: rendered once, stored, sent once, however often it runs and
whatever the SMTP server does."""

import threading
from datetime import date, datetime, timedelta, timezone
from email import message_from_bytes, policy

import pytest
from recap_helpers import insert_user, insert_week, make_row

from weekly_wrapped.recap import store
from weekly_wrapped.recap.job import batches, due_weeks, recap_targets, send_batch, send_weekly_recap

WEEK = date(2026, 11, 16)
FROM = "Weekly Wrapped <wrapped@localhost>"
# Berlin's week of the 16th ends Monday 2026-11-23 00:00 CET = Sunday 23:00 UTC.
WEEK_END = datetime(2026, 11, 22, 23, 0, tzinfo=timezone.utc)


@pytest.fixture
def ada(db):
    insert_user(db, "recap-ada", "ada@example.com")
    insert_week(db, make_row(user_id="recap-ada", user_week_id="recap-ada|2026-11-16"))
    return "recap-ada"


def record(db, user_id, week=WEEK):
    with db.cursor() as cur:
        cur.execute("select status, recipient, message_id, subject, sent_at, message, attempts, last_error "
                    "from app.sent_emails where user_id = %s and week_start = %s", (user_id, week))
        row = cur.fetchone()
    if row is None:
        return None
    names = ["status", "recipient", "message_id", "subject", "sent_at", "message", "attempts", "last_error"]
    return dict(zip(names, row))


def send(recap_db, user_id, gemini, week=WEEK, **kwargs):
    return send_weekly_recap(recap_db, user_id, week.isoformat(), gemini=gemini, from_addr=FROM, **kwargs)


def delivered_bytes(eml_path) -> bytes:
    """The message as the server received it: the .eml without the sink's trace headers."""
    data = eml_path.read_bytes()
    while data.startswith((b"Return-Path:", b"Delivered-To:")):
        data = data.split(b"\r\n", 1)[1]
    return data


def age_last_attempt(db, user_id, hours):
    with db.cursor() as cur:
        cur.execute("update app.sent_emails set last_attempt_at = last_attempt_at - %s * interval '1 hour' "
                    "where user_id = %s", (hours, user_id))


def test_sends_once_and_stores_exactly_the_sent_bytes(recap_db, db, ada, gemini, gemini_server, mailbox):
    first = send(recap_db, ada, gemini)
    assert first["status"] == "sent" and first["recap_source"] == "gemini"
    second = send(recap_db, ada, gemini)
    assert second["status"] == "already_sent"

    files = list(mailbox.glob("*.eml"))
    assert len(files) == 1
    stored = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert stored["Message-ID"] == first["message_id"]
    assert stored["To"] == "ada@example.com" and stored["Delivered-To"] == "ada@example.com"
    text = stored.get_body(("plain",)).get_content()
    assert "Björk" in text and "87" in text and "312.4" in text

    sent = record(db, ada)
    assert sent["status"] == "sent" and sent["attempts"] == 1 and sent["sent_at"] is not None
    assert (sent["recipient"], sent["message_id"]) == ("ada@example.com", first["message_id"])
    assert sent["subject"] == stored["Subject"]
    assert bytes(sent["message"]) == delivered_bytes(files[0])  # what went out is what is stored
    assert gemini_server.state.stats()["by_status"] == {"200": 1}  # the rerun asked Gemini nothing


def test_reply_lost_is_unknown_and_resent_only_by_the_policy(recap_db, db, ada, gemini, gemini_server, sink):
    sink.lose_replies(1)
    first = send(recap_db, ada, gemini)
    assert first["status"] == "unknown"
    assert len(sink.messages()) == 1, "the server got it once"
    lost = record(db, ada)
    assert lost["status"] == "unknown" and lost["sent_at"] is None and "SMTPServerDisconnected" in lost["last_error"]

    # The next runs, within the policy's wait: nothing is resent.
    assert send(recap_db, ada, gemini)["status"] == "unknown"
    assert send_batch(recap_db, [{"user_id": ada, "week_start": WEEK.isoformat()}], gemini=gemini,
                      from_addr=FROM)[0]["status"] == "unknown"
    assert len(sink.messages()) == 1

    # A run after UNKNOWN_RESEND_AFTER resends the stored bytes: same Message-ID, no new render.
    age_last_attempt(db, ada, store.UNKNOWN_RESEND_AFTER.total_seconds() / 3600 + 1)
    assert send(recap_db, ada, gemini)["status"] == "sent"
    first_copy, second_copy = sink.messages()
    assert delivered_bytes(first_copy) == delivered_bytes(second_copy) == bytes(record(db, ada)["message"])
    sent = record(db, ada)
    assert sent["status"] == "sent" and sent["attempts"] == 2 and sent["last_error"] is None
    assert gemini_server.state.stats()["by_status"] == {"200": 1}


def test_an_operator_confirms_a_resend_at_once(recap_db, db, ada, gemini, sink):
    sink.lose_replies(1)
    assert send(recap_db, ada, gemini)["status"] == "unknown"
    assert send(recap_db, ada, gemini, resend_unknown=True)["status"] == "sent"
    assert len(sink.messages()) == 2 and record(db, ada)["status"] == "sent"


def test_after_two_lost_replies_only_an_operator_resends(recap_db, db, ada, gemini, sink):
    sink.lose_replies(2)
    assert send(recap_db, ada, gemini)["status"] == "unknown"
    age_last_attempt(db, ada, 25)
    assert send(recap_db, ada, gemini)["status"] == "unknown"  # the automatic resend, lost again
    age_last_attempt(db, ada, 24 * 30)
    assert send(recap_db, ada, gemini)["status"] == "unknown"  # no third try without an operator
    assert len(sink.messages()) == 2
    assert send(recap_db, ada, gemini, resend_unknown=True)["status"] == "sent"
    assert len(sink.messages()) == 3


def test_smtp_down_then_up_sends_the_stored_message_once(recap_db, db, ada, gemini, gemini_server, sink):
    sink.stop()
    target = [{"user_id": ada, "week_start": WEEK.isoformat()}]
    down = send_batch(recap_db, target, gemini=gemini, from_addr=FROM)
    assert down[0]["status"] == "failed" and "Connection" in down[0]["error"]
    waiting = record(db, ada)
    assert waiting["status"] == "rendered" and waiting["attempts"] == 1 and waiting["message"]

    sink.start()
    up = send_batch(recap_db, target, gemini=gemini, from_addr=FROM)
    assert up[0]["status"] == "sent"
    assert send_batch(recap_db, target, gemini=gemini, from_addr=FROM)[0]["status"] == "already_sent"
    (eml,) = sink.messages()
    assert delivered_bytes(eml) == bytes(record(db, ada)["message"]) == bytes(waiting["message"])
    assert gemini_server.state.stats()["by_status"] == {"200": 1}  # rendered once, before the outage


def test_racing_workers_send_once(recap_db, db, ada, gemini, mailbox):
    """Two tries of the same (user, week) at once: the second sees the first one's `sending` and stops."""
    from weekly_wrapped.recap.mailer import send_stored

    in_send = threading.Event()
    release = threading.Event()

    def slow_send(data, recipient):
        in_send.set()
        release.wait(10)
        send_stored(data, "wrapped@localhost", recipient)

    results = {}
    first = threading.Thread(target=lambda: results.setdefault("a", send(recap_db, ada, gemini, send=slow_send)))
    first.start()
    assert in_send.wait(30)
    assert send(recap_db, ada, gemini)["status"] == "in_progress"
    release.set()
    first.join(30)
    assert results["a"]["status"] == "sent"
    assert len(list(mailbox.glob("*.eml"))) == 1


def test_a_worker_lost_mid_send_leaves_an_unknown_outcome(recap_db, db, ada, gemini, mailbox):
    def dies(data, recipient):
        raise KeyboardInterrupt  # stands for the process being killed: no cleanup we can count on

    with pytest.raises(KeyboardInterrupt):
        send(recap_db, ada, gemini, send=dies)
    assert record(db, ada)["status"] == "sending"
    assert send(recap_db, ada, gemini)["status"] == "in_progress"
    age_last_attempt(db, ada, 1)  # older than SENDING_STALE_AFTER
    assert send(recap_db, ada, gemini)["status"] == "unknown"
    assert record(db, ada)["last_error"] == "worker lost during the send"
    assert list(mailbox.glob("*.eml")) == []


def test_only_one_recipient(recap_db, db, gemini, mailbox):
    insert_user(db, "recap-two", "a@example.com, b@example.com")
    insert_week(db, make_row(user_id="recap-two", user_week_id="recap-two|2026-11-16"))
    assert send(recap_db, "recap-two", gemini)["status"] == "invalid_recipient"
    assert record(db, "recap-two") is None and list(mailbox.glob("*.eml")) == []


def test_gemini_down_still_sends_the_template_recap(recap_db, db, ada, gemini, gemini_server, mailbox):
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
    assert list(mailbox.glob("*.eml")) == [] and record(db, ada) is None


def test_unsubscribed_after_rendering_is_not_sent(recap_db, db, ada, gemini, sink):
    sink.stop()
    with pytest.raises(ConnectionError):
        send(recap_db, ada, gemini)
    with db.cursor() as cur:
        cur.execute("update app.users set status = 'unsubscribed' where user_id = %s", (ada,))
    sink.start()
    assert send(recap_db, ada, gemini)["status"] == "not_active"
    assert sink.messages() == []


def test_any_day_of_the_week_means_that_weeks_monday(recap_db, db, ada, gemini, mailbox):
    outcome = send(recap_db, ada, gemini, week=date(2026, 11, 18))  # a Wednesday
    assert outcome["week_start"] == "2026-11-16" and outcome["status"] == "sent"
    assert send(recap_db, ada, gemini, week=date(2026, 11, 22))["status"] == "already_sent"  # its Sunday


# ---- which weeks, and when they are ready -------------------------------------------------


def test_targets_are_active_users_with_a_complete_week(recap_db, db, week_complete):
    insert_user(db, "recap-berlin", "b@example.com", "Europe/Berlin")
    insert_user(db, "recap-la", "la@example.com", "America/Los_Angeles")
    insert_user(db, "recap-gone", "g@example.com", "UTC", status="unsubscribed")
    insert_user(db, "recap-quiet", "q@example.com", "UTC")  # no plays: no row, no e-mail
    for user, week in [("recap-berlin", "2026-11-16"), ("recap-la", "2026-11-09"), ("recap-la", "2026-11-16"),
                       ("recap-gone", "2026-11-16")]:
        insert_week(db, make_row(user_id=user, week_start=date.fromisoformat(week), user_week_id=f"{user}|{week}"))
    polled = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
    for user in ("recap-berlin", "recap-la", "recap-gone", "recap-quiet"):
        week_complete(user, polled)
    built = polled + timedelta(minutes=10)

    # Monday 07:00 UTC: Berlin's week of the 16th is over; in Los Angeles it is still Sunday.
    early = datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc)
    assert recap_targets(recap_db, early, marts_built_from=built)["ready"] == [
        {"user_id": "recap-berlin", "week_start": "2026-11-16"},
        {"user_id": "recap-la", "week_start": "2026-11-09"},
    ]
    noon = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    assert recap_targets(recap_db, noon, marts_built_from=built) == {
        "ready": [{"user_id": "recap-berlin", "week_start": "2026-11-16"},
                  {"user_id": "recap-la", "week_start": "2026-11-16"}],
        "not_ready": [],
    }
    assert recap_targets(recap_db, noon, "2026-11-09", marts_built_from=built)["ready"] == [
        {"user_id": "recap-la", "week_start": "2026-11-09"}]


def test_a_week_not_ready_is_not_sent_and_a_later_run_sends_it(recap_db, db, ada, gemini, mailbox, week_complete):
    monday_noon = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    built = datetime(2026, 11, 23, 11, 0, tzinfo=timezone.utc)

    def run(run_after, marts_built_from):
        targets = recap_targets(recap_db, run_after, marts_built_from=marts_built_from)
        outcomes = send_batch(recap_db, targets["ready"], gemini=gemini, from_addr=FROM)
        return targets["not_ready"], outcomes

    # Never polled since the week ended.
    week_complete(ada, WEEK_END - timedelta(hours=2))
    not_ready, outcomes = run(monday_noon, built)
    assert not_ready == [{"user_id": ada, "week_start": "2026-11-16", "reason": "not_polled_since_week_end"}]
    assert outcomes == [] and list(mailbox.glob("*.eml")) == []

    # Polled, but the consumer has not loaded the newest play yet.
    polled = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
    with db.cursor() as cur:
        cur.execute("insert into app.ingest_outcomes (user_id, outcome, created_at) values (%s, 'ok', %s)", (ada, polled))
        cur.execute("update app.ingest_cursors set after_ms = %s where user_id = %s",
                    (int((polled - timedelta(minutes=5)).timestamp() * 1000), ada))
    assert run(monday_noon, built)[0][0]["reason"] == "consumer_behind"

    # Loaded, but the marts were built before that.
    week_complete(ada, polled, newest_play_at=polled - timedelta(minutes=5))
    assert run(monday_noon, polled)[0][0]["reason"] == "marts_not_rebuilt"
    assert list(mailbox.glob("*.eml")) == []

    # A later run, after dbt built again: sent, once.
    later = monday_noon + timedelta(hours=1)
    not_ready, outcomes = run(later, polled + timedelta(minutes=30))
    assert not_ready == [] and [o["status"] for o in outcomes] == ["sent"]
    assert run(later + timedelta(hours=1), polled + timedelta(minutes=30)) == ([], [])
    assert len(list(mailbox.glob("*.eml"))) == 1


def test_a_week_ready_only_days_later_is_still_due():
    berlin = {"user_id": "u", "time_zone": "Europe/Berlin", "created_at": datetime(2026, 11, 18, tzinfo=timezone.utc)}
    # A week and a half later the week of the 16th (the user's first) is still owed, with the one after it.
    run_after = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    assert due_weeks(berlin, run_after) == [date(2026, 11, 16), date(2026, 11, 23)]
    # At most LOOKBACK_WEEKS before the last complete one.
    old = {**berlin, "created_at": datetime(2025, 1, 1, tzinfo=timezone.utc)}
    assert due_weeks(old, run_after) == [date(2026, 11, 9), date(2026, 11, 16), date(2026, 11, 23)]
    # A new user is owed their last complete week only, not their past.
    new = {**berlin, "created_at": datetime(2026, 12, 1, tzinfo=timezone.utc)}
    assert due_weeks(new, run_after) == [date(2026, 11, 23)]


def test_week_row_prefers_the_marts_time_zone(recap_db, db, ada):
    import psycopg2

    # The week was computed in Berlin (the mart's row); the listener has since moved to New York.
    with db.cursor() as cur:
        cur.execute("update app.users set time_zone = 'America/New_York', locale = 'de' where user_id = %s", (ada,))
    with psycopg2.connect(recap_db) as conn:
        row = store.week_row(conn, ada, WEEK)
    conn.close()
    assert row["time_zone"] == "Europe/Berlin" and row["email"] == "ada@example.com"
    assert row["user_status"] == "active" and row["locale"] == "de"


def test_batches_are_as_many_as_run_at_once():
    assert [len(b) for b in batches(list(range(1000)), 4)] == [250, 250, 250, 250]
    assert [len(b) for b in batches(list(range(30)), 4)] == [25, 5]  # small batches cost more than they save
    assert sum(batches(list(range(1001)), 4), []) == list(range(1001))
    assert batches([], 4) == []
