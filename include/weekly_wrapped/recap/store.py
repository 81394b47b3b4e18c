"""Postgres reads and the exactly-once send record. I/O edge (psycopg2 connections in).

Exactly once per (user, week_start): `deliver_once` claims the week by inserting the
app.sent_emails row inside a transaction, sends while holding the claim, and commits only
after the SMTP server accepted the message. So:
- a retry after a failed send finds no row (the claim was rolled back) and sends again;
- a retry after a successful send finds the row and sends nothing;
- two workers racing for the same week: the second INSERT waits on the first one's
  uncommitted row, then sees the conflict, and sends nothing.
The one window left is a crash after the server accepted and before the COMMIT; the
resend then carries the same Message-ID, so mail clients show one message.
"""

from __future__ import annotations

from datetime import date
from email.message import EmailMessage
from typing import Callable

WEEK_ROW_SQL = """
select w.*, u.email, u.display_name, u.time_zone as user_time_zone, u.status as user_status
from marts.wrapped_weekly w
join app.users u on u.user_id = w.user_id
where w.user_id = %s and w.week_start = %s
"""

ACTIVE_USERS_SQL = "select user_id, time_zone from app.users where status = 'active' order by user_id"

WEEKS_PRESENT_SQL = """
select w.user_id, w.week_start
from marts.wrapped_weekly w
join unnest(%s::text[], %s::date[]) as want(user_id, week_start)
  on want.user_id = w.user_id and want.week_start = w.week_start
order by w.user_id
"""


def _dict_rows(cursor) -> list[dict]:
    names = [c.name for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def active_users(conn) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute(ACTIVE_USERS_SQL)
        return _dict_rows(cur)


def weeks_present(conn, wanted: list[tuple[str, date]]) -> list[tuple[str, date]]:
    """The (user, week) pairs of `wanted` that have a row in marts.wrapped_weekly."""
    if not wanted:
        return []
    with conn.cursor() as cur:
        cur.execute(WEEKS_PRESENT_SQL, ([u for u, _ in wanted], [w for _, w in wanted]))
        return [(r[0], r[1]) for r in cur.fetchall()]


def week_row(conn, user_id: str, week_start: date) -> dict | None:
    """The user's wrapped_weekly row for the week, with e-mail, name, tz and status; None if absent.

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


def already_sent(conn, user_id: str, week_start: date) -> bool:
    with conn.cursor() as cur:
        cur.execute("select 1 from app.sent_emails where user_id = %s and week_start = %s", (user_id, week_start))
        return cur.fetchone() is not None


def deliver_once(
    conn,
    *,
    user_id: str,
    week_start: date,
    message: EmailMessage,
    send: Callable[[EmailMessage], None],
) -> bool:
    """Send `message` unless this (user, week) was already sent; True if it was sent now."""
    with conn:  # one transaction: commit on success, roll back (releasing the claim) on error
        with conn.cursor() as cur:
            cur.execute(
                """
                insert into app.sent_emails (user_id, week_start, recipient, message_id, subject)
                values (%s, %s, %s, %s, %s)
                on conflict (user_id, week_start) do nothing
                returning 1
                """,
                (user_id, week_start, message["To"], message["Message-ID"], message["Subject"]),
            )
            if cur.fetchone() is None:
                return False
            send(message)
            # When the server accepted it, not when the transaction began.
            cur.execute(
                "update app.sent_emails set sent_at = clock_timestamp() where user_id = %s and week_start = %s",
                (user_id, week_start),
            )
    return True
