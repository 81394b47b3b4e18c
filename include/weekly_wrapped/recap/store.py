"""Postgres reads, week readiness, and the exactly-once send record. I/O edge (psycopg2 connections in).

One e-mail per (user, week_start), recorded in app.sent_emails:

    rendered --> sending --> sent
                   |  \\--> unknown      (the server got the message, its reply was lost)
                   \\-----> rendered     (definitely not delivered: the next attempt may send)

- The message is rendered once and its bytes stored (`save_rendered`); every attempt sends
  those bytes, so a retry never re-renders, never asks Gemini again, and keeps the Message-ID.
- `deliver` marks the row `sending` and COMMITS before talking to the server, so a crash in
  the middle leaves a visible `sending`, never a silently released claim. A `sending` row
  older than SENDING_STALE_AFTER belonged to a worker that died: its outcome is unknown.
- `unknown` is never resent blindly (see `may_resend_unknown`, the policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Callable
from zoneinfo import ZoneInfo

from weekly_wrapped.recap.facts import valid_time_zone

# Longer than any SMTP attempt (the hook's timeout is 30 s by default): a `sending` row this
# old has lost its worker.
SENDING_STALE_AFTER = timedelta(minutes=15)
# The policy for an unknown outcome: resent automatically (the stored bytes, same Message-ID)
# by the first run at least this long after the attempt, and only while fewer than
# MAX_UNKNOWN_OUTCOMES attempts ended unknown; after that only an operator's
# `resend_unknown` does. The wait gives the operator time to look for the Message-ID in the
# mail server's log and mark the row `sent`.
UNKNOWN_RESEND_AFTER = timedelta(hours=24)
MAX_UNKNOWN_OUTCOMES = 2

WEEK_ROW_SQL = """
select w.*, u.email, u.display_name, u.time_zone as user_time_zone, u.status as user_status, u.locale,
       u.email_confirmed_at
from marts.wrapped_weekly w
join app.users u on u.user_id = w.user_id
where w.user_id = %s and w.week_start = %s
"""

# Recaps go only to active users whose address is confirmed (weekly_wrapped.users.addresses)
# and who have not paused them on their page (weekly_wrapped.page.app).
ACTIVE_USERS_SQL = """
select user_id, time_zone, created_at from app.users
where status = 'active' and email_confirmed_at is not null and not recaps_paused
order by user_id
"""

WEEKS_PRESENT_SQL = """
select w.user_id, w.week_start
from marts.wrapped_weekly w
join unnest(%s::text[], %s::date[]) as want(user_id, week_start)
  on want.user_id = w.user_id and want.week_start = w.week_start
order by w.user_id
"""

SEND_STATUSES_SQL = """
select s.user_id, s.week_start, s.status
from app.sent_emails s
join unnest(%s::text[], %s::date[]) as want(user_id, week_start)
  on want.user_id = s.user_id and want.week_start = s.week_start
"""

# Per user: the last successful poll, the ingest cursor (newest play Kafka acknowledged) and
# when raw.plays got that play (null: the consumer has not loaded it yet).
INGEST_PROGRESS_SQL = """
select u.user_id,
       (select max(o.created_at) from app.ingest_outcomes o
         where o.user_id = u.user_id and o.outcome = 'ok') as polled_ok_at,
       c.after_ms as cursor_ms,
       (select max(p.loaded_at) from raw.plays p
         where p.user_id = u.user_id
           and p.played_at >= to_timestamp(c.after_ms / 1000.0) - interval '1 millisecond') as cursor_loaded_at
from app.users u
left join app.ingest_cursors c on c.user_id = u.user_id
where u.user_id = any(%s)
"""


def _dict_rows(cursor) -> list[dict]:
    names = [c.name for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def active_users(conn) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute(ACTIVE_USERS_SQL)
        return _dict_rows(cur)


def mart_exists(conn) -> bool:
    """Whether dbt has built marts.wrapped_weekly at all (a new installation has not yet)."""
    with conn.cursor() as cur:
        cur.execute("select to_regclass('marts.wrapped_weekly') is not null")
        return cur.fetchone()[0]


def weeks_present(conn, wanted: list[tuple[str, date]]) -> list[tuple[str, date]]:
    """The (user, week) pairs of `wanted` that have a row in marts.wrapped_weekly."""
    if not wanted:
        return []
    with conn.cursor() as cur:
        cur.execute(WEEKS_PRESENT_SQL, ([u for u, _ in wanted], [w for _, w in wanted]))
        return [(r[0], r[1]) for r in cur.fetchall()]


def send_statuses(conn, wanted: list[tuple[str, date]]) -> dict[tuple[str, date], str]:
    """{(user, week): status} for the pairs of `wanted` with a stored message."""
    if not wanted:
        return {}
    with conn.cursor() as cur:
        cur.execute(SEND_STATUSES_SQL, ([u for u, _ in wanted], [w for _, w in wanted]))
        return {(r[0], r[1]): r[2] for r in cur.fetchall()}


def ingest_progress(conn, user_ids: list[str]) -> dict[str, dict]:
    if not user_ids:
        return {}
    with conn.cursor() as cur:
        cur.execute(INGEST_PROGRESS_SQL, (list(user_ids),))
        return {r["user_id"]: r for r in _dict_rows(cur)}


def week_end_at(week_start: date, time_zone: str) -> datetime:
    """The instant the local week ends: the next Monday 00:00 in `time_zone` (DST included)."""
    return datetime.combine(week_start + timedelta(days=7), time(0), ZoneInfo(valid_time_zone(time_zone)))


def week_not_ready(
    week_end: datetime, progress: dict | None, marts_built_from: datetime | None
) -> str | None:
    """Why the week is not complete in the marts yet, or None when it is. Pure.

    Complete means: the user was polled successfully after the week ended (so Spotify's
    recently-played covered its last plays); the consumer loaded the newest play Kafka
    acknowledged for the user (the ingest cursor); and the marts were built by a dbt run
    that started after both the week's end and that load.
    """
    progress = progress or {}
    polled = progress.get("polled_ok_at")
    if polled is None or polled < week_end:
        return "not_polled_since_week_end"
    loaded = progress.get("cursor_loaded_at")
    if progress.get("cursor_ms") is not None and loaded is None:
        return "consumer_behind"
    if marts_built_from is None or marts_built_from < week_end or (loaded is not None and marts_built_from <= loaded):
        return "marts_not_rebuilt"
    return None


def week_row(conn, user_id: str, week_start: date) -> dict | None:
    """The user's wrapped_weekly row for the week, with e-mail, name, tz, status and locale; None if absent.

    The mart's time zone (the one the week was computed in) wins; app.users' is the fallback.
    """
    with conn.cursor() as cur:
        cur.execute(WEEK_ROW_SQL, (user_id, week_start))
        rows = _dict_rows(cur)
    if not rows:
        return None
    row = rows[0]
    row["time_zone"] = row.get("time_zone") or row.pop("user_time_zone")
    return row


def stored_send(conn, user_id: str, week_start: date) -> dict | None:
    """The week's send record ({"status", "message_id", "recipient"}), None when nothing is stored."""
    with conn.cursor() as cur:
        cur.execute("select status, message_id, recipient from app.sent_emails where user_id = %s and week_start = %s",
                    (user_id, week_start))
        rows = _dict_rows(cur)
    conn.rollback()  # a read only: no transaction left open (and no lock held) while others work
    return rows[0] if rows else None


def already_sent(conn, user_id: str, week_start: date) -> bool:
    stored = stored_send(conn, user_id, week_start)
    return stored is not None and stored["status"] == "sent"


def save_rendered(
    conn, *, user_id: str, week_start: date, recipient: str, message_id: str, subject: str, message: bytes
) -> bool:
    """Store the rendered message unless the week already has one; True if this one was stored."""
    with conn:
        with conn.cursor() as cur:
            cur.execute(
                """
                insert into app.sent_emails
                    (user_id, week_start, recipient, message_id, subject, message, status, rendered_at, sent_at)
                values (%s, %s, %s, %s, %s, %s, 'rendered', now(), null)
                on conflict (user_id, week_start) do nothing
                returning 1
                """,
                (user_id, week_start, recipient, message_id, subject, message),
            )
            return cur.fetchone() is not None


@dataclass(frozen=True)
class Attempt:
    """A stored message that may be sent now."""
    message: bytes
    recipient: str
    message_id: str
    previous_status: str


def may_resend_unknown(age: timedelta, unknown_outcomes: int, resend_unknown: bool) -> bool:
    """The policy for a send whose outcome is unknown. Pure.

    Resend (the same bytes, same Message-ID) when an operator confirmed it (`resend_unknown`),
    or automatically once the last attempt is UNKNOWN_RESEND_AFTER old, as long as fewer than
    MAX_UNKNOWN_OUTCOMES attempts ended unknown. Mail clients that see the Message-ID twice
    show one message, so the rare duplicate is cheaper than a week that never arrives.
    """
    if resend_unknown:
        return True
    return age >= UNKNOWN_RESEND_AFTER and unknown_outcomes < MAX_UNKNOWN_OUTCOMES


def begin_attempt(conn, user_id: str, week_start: date, *, resend_unknown: bool = False) -> Attempt | str:
    """Claim the stored message for one attempt (status `sending`, committed), or say why not.

    Returns an Attempt, or one of: "not_rendered", "already_sent", "in_progress",
    "unknown" (waiting for the policy), "not_active".
    """
    with conn:
        with conn.cursor() as cur:
            cur.execute(
                """
                select s.status, s.message, s.recipient, s.message_id, s.unknown_outcomes,
                       clock_timestamp() - coalesce(s.last_attempt_at, s.rendered_at) as age, u.status
                from app.sent_emails s join app.users u on u.user_id = s.user_id
                where s.user_id = %s and s.week_start = %s
                for update of s
                """,
                (user_id, week_start),
            )
            row = cur.fetchone()
            if row is None:
                return "not_rendered"
            status, message, recipient, message_id, unknown_outcomes, age, user_status = row
            if status == "sent":
                return "already_sent"
            if status == "sending":
                if age < SENDING_STALE_AFTER:
                    return "in_progress"
                status = "unknown"  # its worker died mid-send: it may have gone out
                cur.execute(
                    "update app.sent_emails set status = 'unknown', unknown_outcomes = unknown_outcomes + 1, "
                    "last_error = 'worker lost during the send' where user_id = %s and week_start = %s",
                    (user_id, week_start),
                )
                unknown_outcomes += 1
            if user_status != "active":
                return "not_active"
            if status == "unknown" and not may_resend_unknown(age, unknown_outcomes, resend_unknown):
                return "unknown"
            cur.execute(
                "update app.sent_emails set status = 'sending', attempts = attempts + 1, "
                "last_attempt_at = clock_timestamp() where user_id = %s and week_start = %s",
                (user_id, week_start),
            )
    return Attempt(bytes(message), recipient, message_id, status)


def finish_attempt(conn, user_id: str, week_start: date, status: str, error: str | None = None) -> None:
    """Record how the attempt ended: sent, unknown, or back to its previous status on a definite failure."""
    with conn:
        with conn.cursor() as cur:
            cur.execute(
                """
                update app.sent_emails
                set status = %(status)s,
                    sent_at = case when %(status)s = 'sent' then clock_timestamp() end,
                    unknown_outcomes = unknown_outcomes + (%(status)s = 'unknown')::int,
                    last_error = %(error)s
                where user_id = %(user_id)s and week_start = %(week)s
                """,
                {"status": status, "error": (error or "")[:1000] or None, "user_id": user_id, "week": week_start},
            )


def deliver(
    conn,
    user_id: str,
    week_start: date,
    send: Callable[[bytes, str], None],
    *,
    is_unknown: Callable[[BaseException], bool],
    resend_unknown: bool = False,
) -> str:
    """Send the week's stored message at most once; returns the status ("sent", "unknown", or why not).

    `send(message_bytes, recipient)` raises an exception for which `is_unknown` is true when
    the outcome cannot be known; any other exception means not delivered, and is re-raised
    after the row went back to its previous status.
    """
    attempt = begin_attempt(conn, user_id, week_start, resend_unknown=resend_unknown)
    if isinstance(attempt, str):
        return attempt
    try:
        send(attempt.message, attempt.recipient)
    # Only Exceptions: when the task is killed (SystemExit, KeyboardInterrupt) the message may
    # be on its way, so the row stays `sending` and turns `unknown` once stale.
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        if is_unknown(exc):
            finish_attempt(conn, user_id, week_start, "unknown", error)
            return "unknown"
        finish_attempt(conn, user_id, week_start, attempt.previous_status, error)
        raise
    finish_attempt(conn, user_id, week_start, "sent")
    return "sent"
