"""The weekly recap: which weeks are due and ready, and sending each exactly once. What the
`weekly_wrapped` DAG calls.

    recap_targets(dsn, run_after, week_start=None, marts_built_from=...) -> {"ready", "not_ready"}
    send_batch(dsn, targets, gemini=..., from_addr=...)                  -> [outcome]
    send_weekly_recap(dsn, user_id, week_start, gemini=..., from_addr=...) -> outcome

Sending policy (README "The weekly e-mail"):
- A week is due for a user once it ended in their time zone; the last complete week always,
  the LOOKBACK_WEEKS before it too when they ended after the user signed up, so a week that
  was not ready for days is still sent, never skipped for good.
- A due week is sent only once it is complete in the marts (`store.week_not_ready`); until
  then it is reported `not_ready` and the next run checks again.
- The e-mail is rendered once and its bytes stored; every attempt sends those bytes.
- An attempt whose outcome is unknown (the server got the message, its reply was lost) is
  recorded `unknown` and resent only by `store.may_resend_unknown`'s policy.

Knows nothing about Airflow beyond the SMTP hook used to send; connections are read by
the DAG task (weekly_wrapped.airflow.connections) and passed in as plain values.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from typing import Callable, Protocol

from weekly_wrapped import db
from weekly_wrapped.page.household import TasteMatch, taste_match_on
from weekly_wrapped.recap import store
from weekly_wrapped.recap.facts import facts_from_row, last_complete_week_start
from weekly_wrapped.recap.ai import ArtistLookup, write_intro
from weekly_wrapped.recap.mailer import (
    DeliveryUnknown,
    RecipientError,
    envelope_sender,
    message_bytes,
    single_recipient,
)
from weekly_wrapped.recap.render import build_message
from weekly_wrapped.page import access as page_access
from weekly_wrapped.users import leaving

log = logging.getLogger(__name__)

# Weeks before the last complete one that are still sent when they were not ready in time.
LOOKBACK_WEEKS = 2
# Users whose recaps one batch works on at once: most of a recap's time is spent waiting
# for Gemini, so threads overlap the waits.
BATCH_THREADS = 16


class GeminiSettings(Protocol):  # weekly_wrapped.airflow.connections.GeminiApi fits
    api_key: str
    model: str
    base_url: str | None


def parse_week_start(value: str | date | None) -> date | None:
    """A week override as YYYY-MM-DD (or a date): the Monday of the week holding that day.

    Any day of the week is accepted and moved back to its Monday, so "2026-11-18" means the
    week of Monday 2026-11-16. None or "" means "not given".
    """
    if value in (None, ""):
        return None
    day = value if isinstance(value, date) else date.fromisoformat(str(value).strip())
    return day - timedelta(days=day.weekday())


def due_weeks(user: dict, run_after: datetime, lookback_weeks: int = LOOKBACK_WEEKS) -> list[date]:
    """The weeks owed to `user` at `run_after`, oldest first. Pure.

    The last complete week in their time zone always; the `lookback_weeks` before it when
    they ended after the user signed up (a new user is not sent their past).
    """
    last = last_complete_week_start(run_after, user["time_zone"])
    weeks = [last]
    created_at = user.get("created_at")
    for back in range(1, lookback_weeks + 1):
        week = last - timedelta(weeks=back)
        if created_at is not None and store.week_end_at(week, user["time_zone"]) > created_at:
            weeks.append(week)
    return sorted(weeks)


def recap_targets(
    dsn: str,
    run_after: datetime,
    week_start: str | date | None = None,
    *,
    marts_built_from: datetime | None,
    preview: bool = False,
) -> dict[str, list[dict]]:
    """The due (user, week) pairs not sent yet: {"ready": [...], "not_ready": [...]}.

    `ready` entries ({"user_id", "week_start"}) have a stored message to (re)send, or a
    complete week with a wrapped_weekly row; `not_ready` entries add the "reason". A
    complete week without a row (no plays) is neither: there is nothing to send.
    `marts_built_from` is when the dbt run behind the current marts started.
    Weeks are picked at `run_after` (the run's time, never "now"), so a rerun picks the same.
    With `preview`, every due week with a row is ready, sent or not, complete or not.
    """
    override = parse_week_start(week_start)
    with closing(db.connect(dsn, application_name="weekly_wrapped.recap")) as conn:
        users = {u["user_id"]: u for u in store.active_users(conn)}
        wanted = [
            (user_id, week)
            for user_id, user in users.items()
            for week in ([override] if override else due_weeks(user, run_after))
        ]
        statuses = {} if preview else store.send_statuses(conn, wanted)
        unsent = [pair for pair in wanted if statuses.get(pair) != "sent"]
        progress = store.ingest_progress(conn, sorted({u for u, _ in unsent}))
        if not store.mart_exists(conn):
            marts_built_from = None  # whatever was recorded, there is no mart to read yet
        ready, not_ready = [], []
        for user_id, week in unsent:
            if statuses.get((user_id, week)) is not None:  # rendered earlier: it was ready then
                ready.append((user_id, week))
                continue
            week_end = store.week_end_at(week, users[user_id]["time_zone"])
            reason = None if preview else store.week_not_ready(week_end, progress.get(user_id), marts_built_from)
            if reason:
                not_ready.append({"user_id": user_id, "week_start": week.isoformat(), "reason": reason})
            else:
                ready.append((user_id, week))
        stored = [pair for pair in ready if statuses.get(pair) is not None]
        present = set(store.weeks_present(conn, [pair for pair in ready if pair not in stored])) | set(stored)
    targets = [{"user_id": u, "week_start": w.isoformat()} for u, w in ready if (u, w) in present]
    log.info("recap targets: %d active users, %d weeks due and unsent, %d ready to send, %d not ready",
             len(users), len(unsent), len(targets), len(not_ready))
    return {"ready": targets, "not_ready": not_ready}


def compose(
    row: dict,
    gemini: GeminiSettings | None,
    from_addr: str,
    gemini_timeout_s: float,
    recommendations: ArtistLookup | None = None,
    link_secret: str | None = None,
    public_url: str | None = None,
    household: TasteMatch | None = None,
) -> tuple[EmailMessage, str]:
    """The week's e-mail and who wrote its intro ("gemini" / "template").

    With `link_secret` and `public_url`, it carries signed "your page" (page.access), "unsubscribe"
    and "delete my data" links in its footer and RFC 8058's List-Unsubscribe headers (users.leaving).
    `household` (page.household, for people who opted in) adds its section; it is not
    part of the facts, so Gemini never sees it.
    """
    facts = facts_from_row(row)
    intro = write_intro(facts, gemini, recommendations=recommendations, timeout_s=gemini_timeout_s)
    headers, account_links = {}, None
    if link_secret and public_url:
        headers = leaving.list_unsubscribe_headers(link_secret, public_url, row["user_id"])
        account_links = {"unsubscribe": leaving.unsubscribe_url(link_secret, public_url, row["user_id"]),
                         "delete": leaving.delete_request_url(link_secret, public_url, row["user_id"]),
                         "page": page_access.page_link_url(public_url, link_secret, row["user_id"])}
    message = build_message(facts, intro, from_addr=from_addr, to_addr=row["email"], extra_headers=headers,
                            account_links=account_links, household=household)
    return message, intro.source


def send_weekly_recap(
    dsn: str,
    user_id: str,
    week_start: str | date,
    *,
    gemini: GeminiSettings | None,
    from_addr: str,
    smtp_conn_id: str = "smtp_default",
    send: Callable[[bytes, str], None] | None = None,
    gemini_timeout_s: float = 20.0,
    resend_unknown: bool = False,
    recommendations: Callable[[str], ArtistLookup] | None = None,
    link_secret: str | None = None,
    public_url: str | None = None,
) -> dict:
    """Render the week's e-mail once (stored), then send the stored bytes at most once. Returns the outcome.

    Status: sent, already_sent, unknown (outcome unknown, resent later by policy),
    in_progress (another worker is sending it), no_data, not_active, invalid_recipient.
    `send(message_bytes, recipient)` defaults to Airflow's SMTP provider with `smtp_conn_id`;
    it raises DeliveryUnknown when the outcome cannot be known. Any other exception means
    not delivered and is raised (the stored message waits for the next attempt).
    `recommendations(user_id)` gives the ArtistLookup when the installation opted in.
    `link_secret` and `public_url` sign the e-mail's unsubscribe and delete links (see `compose`).
    """
    from weekly_wrapped.recap.mailer import send_stored

    week = parse_week_start(week_start)
    outcome = {"user_id": user_id, "week_start": week.isoformat()}
    with closing(db.connect(dsn, application_name="weekly_wrapped.recap")) as conn:
        stored = store.stored_send(conn, user_id, week)
        if stored and stored["status"] == "sent":  # cheap exit on reruns: no Gemini, no render
            return {**outcome, "status": "already_sent", "message_id": stored["message_id"]}
        source = None
        if stored is None:
            row = store.week_row(conn, user_id, week)
            # Read when rendered: whoever opted out by now is left out (None: not opted in).
            household = taste_match_on(conn, user_id, week) if row is not None else None
            conn.rollback()  # end the read transaction before the slow part
            if row is None:
                return {**outcome, "status": "no_data"}
            if row.get("user_status") != "active" or row.get("email_confirmed_at") is None:
                return {**outcome, "status": "not_active"}
            lookup = recommendations(user_id) if recommendations else None
            message, source = compose(row, gemini, from_addr, gemini_timeout_s, lookup, link_secret, public_url,
                                      household)
            try:
                recipient = single_recipient(message)
            except RecipientError as exc:
                log.warning("recap user=%s week=%s not sent: %s", user_id, week, exc)
                return {**outcome, "status": "invalid_recipient"}
            # A racing worker may have stored its own rendering first: then that one is sent.
            store.save_rendered(conn, user_id=user_id, week_start=week, recipient=recipient,
                                message_id=message["Message-ID"], subject=message["Subject"],
                                message=message_bytes(message))
            stored = store.stored_send(conn, user_id, week)
        if send is None:
            sender = envelope_sender_of(from_addr)

            def send(data: bytes, recipient: str) -> None:
                send_stored(data, sender, recipient, smtp_conn_id)

        status = store.deliver(conn, user_id, week, send,
                               is_unknown=lambda exc: isinstance(exc, DeliveryUnknown),
                               resend_unknown=resend_unknown)
    log.info("recap user=%s week=%s status=%s recap_source=%s", user_id, week, status, source)
    result = {**outcome, "status": status, "message_id": stored["message_id"]}
    if source:
        result["recap_source"] = source
    return result


def envelope_sender_of(from_addr: str) -> str:
    message = EmailMessage()
    message["From"] = from_addr
    return envelope_sender(message)


def send_batch(dsn: str, targets: list[dict], *, threads: int = BATCH_THREADS, **kwargs) -> list[dict]:
    """`send_weekly_recap` for each target, `threads` at a time; one user's failure is its outcome
    ("failed", retried by the next run), never the batch's."""

    def one(target: dict) -> dict:
        try:
            return send_weekly_recap(dsn, target["user_id"], target["week_start"], **kwargs)
        except Exception as exc:
            log.exception("recap user=%s week=%s failed", target["user_id"], target["week_start"])
            return {**target, "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(targets)))) as pool:
        return list(pool.map(one, targets))


def preview_batch(dsn: str, targets: list[dict], out_dir: str | None = None) -> list[dict]:
    """`preview.render_preview` of each target to `<out_dir>/<user>_<week>.html`; sends nothing.

    `out_dir` defaults to $WRAPPED_PREVIEW_DIR, else weekly_wrapped_preview in the temp folder.
    """
    import os
    import tempfile
    from pathlib import Path

    from weekly_wrapped.recap.preview import NoRecapRow, render_preview

    folder = Path(out_dir or os.environ.get("WRAPPED_PREVIEW_DIR") or Path(tempfile.gettempdir()) / "weekly_wrapped_preview")
    outcomes = []
    for target in targets:
        out = folder / f"{target['user_id']}_{target['week_start']}.html"
        try:
            path = render_preview(dsn, target["user_id"], target["week_start"], out)
        except NoRecapRow:
            outcomes.append({**target, "status": "no_data"})
            continue
        log.info("preview user=%s week=%s written to %s", target["user_id"], target["week_start"], path)
        outcomes.append({**target, "status": "previewed", "path": str(path)})
    return outcomes


def batches(targets: list[dict], parallel: int, min_size: int = 25) -> list[list[dict]]:
    """`targets` in consecutive lists, `parallel` of them (fewer when small lists would do). Pure.

    As few as can run at once: each batch is an Airflow task, whose start-up (a process,
    imports) costs more CPU than a few recaps; within a batch, threads overlap the waits.
    """
    size = max(min_size, -(-len(targets) // max(1, parallel)))
    return [targets[i:i + size] for i in range(0, len(targets), size)]


def count_outcomes(outcomes: list[dict], not_ready: list[dict] = ()) -> dict[str, int]:
    """Weeks by status, and sent recaps by source (gemini / template), over a run's outcomes."""
    summary: dict[str, int] = {"users": len(outcomes)}
    for outcome in outcomes:
        summary[outcome["status"]] = summary.get(outcome["status"], 0) + 1
        if outcome.get("recap_source") and outcome["status"] == "sent":
            key = f"recap_{outcome['recap_source']}"
            summary[key] = summary.get(key, 0) + 1
    if not_ready:
        summary["not_ready"] = len(not_ready)
    return summary
