"""The weekly recap, one user at a time: what the `weekly_wrapped` DAG calls.

    recap_targets(dsn, run_after, week_start=None)   -> [{"user_id", "week_start"}]
    send_weekly_recap(dsn, user_id, week_start, gemini=..., smtp_conn_id=...) -> outcome

Knows nothing about Airflow beyond the SMTP hook used to send; connections are read by
the DAG task (weekly_wrapped.airflow.connections) and passed in as plain values.
"""

from __future__ import annotations

import logging
from contextlib import closing
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from typing import Callable, Protocol

from weekly_wrapped import db
from weekly_wrapped.recap import store
from weekly_wrapped.recap.facts import WeekFacts, facts_from_row, last_complete_week_start
from weekly_wrapped.recap.grounding import choose_recap
from weekly_wrapped.recap.prompt import build_prompt
from weekly_wrapped.recap.render import build_message

log = logging.getLogger(__name__)


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


def recap_targets(dsn: str, run_after: datetime, week_start: str | date | None = None) -> list[dict]:
    """Every active user whose week has a row in marts.wrapped_weekly.

    Without an override, each user's week is the last one complete in their own time
    zone at `run_after` (the run's time, never "now", so a rerun picks the same weeks).
    """
    override = parse_week_start(week_start)
    with closing(db.connect(dsn, application_name="weekly_wrapped.recap")) as conn:
        users = store.active_users(conn)
        wanted = [
            (u["user_id"], override or last_complete_week_start(run_after, u["time_zone"])) for u in users
        ]
        present = store.weeks_present(conn, wanted)
    log.info("recap targets: %d active users, %d with a week to recap", len(users), len(present))
    return [{"user_id": user_id, "week_start": week.isoformat()} for user_id, week in present]


def write_recap(facts: WeekFacts, gemini: GeminiSettings | None, timeout_s: float = 30.0) -> tuple[str, str]:
    """(recap text, source): Gemini's answer if it is grounded, else the template recap."""
    from weekly_wrapped.recap.gemini import generate_recap_text

    model_text = None
    if gemini is not None and gemini.api_key:
        try:
            model_text = generate_recap_text(
                build_prompt(facts),
                api_key=gemini.api_key,
                model=gemini.model,
                base_url=gemini.base_url,
                timeout_s=timeout_s,
            )
        except Exception as exc:  # any API/network failure: the template recap still goes out
            # The SDK's messages carry the API's error JSON, never the key (it travels in a header).
            log.warning("gemini failed for user=%s week=%s: %s: %.300s", facts.user_id, facts.week_start,
                        type(exc).__name__, exc)
    text, source, problems = choose_recap(model_text, facts)
    if model_text is not None and problems:
        log.warning("gemini answer not used for user=%s: %s", facts.user_id, "; ".join(problems))
    return text, source


def send_weekly_recap(
    dsn: str,
    user_id: str,
    week_start: str | date,
    *,
    gemini: GeminiSettings | None,
    from_addr: str,
    smtp_conn_id: str = "smtp_default",
    send: Callable[[EmailMessage], None] | None = None,
    gemini_timeout_s: float = 30.0,
) -> dict:
    """Read the row, write the recap, render, and send it exactly once. Returns the outcome.

    `send` defaults to Airflow's SMTP provider with `smtp_conn_id`.
    """
    week = parse_week_start(week_start)
    outcome = {"user_id": user_id, "week_start": week.isoformat()}
    with closing(db.connect(dsn, application_name="weekly_wrapped.recap")) as conn:
        # Cheap early exit on retries/reruns: do not ask Gemini again for a week already sent.
        if store.already_sent(conn, user_id, week):
            return {**outcome, "status": "already_sent"}
        row = store.week_row(conn, user_id, week)
        conn.rollback()  # end the read transaction; deliver_once runs its own
        if row is None:
            return {**outcome, "status": "no_data"}
        if row.get("user_status") != "active":
            return {**outcome, "status": "not_active"}
        facts = facts_from_row(row)
        recap, source = write_recap(facts, gemini, gemini_timeout_s)
        message = build_message(facts, recap, recap_source=source, from_addr=from_addr, to_addr=row["email"])
        if send is None:
            from weekly_wrapped.recap.mailer import send_with_airflow_smtp

            def send(msg: EmailMessage) -> None:
                send_with_airflow_smtp(msg, smtp_conn_id)

        sent = store.deliver_once(conn, user_id=user_id, week_start=week, message=message, send=send)
    status = "sent" if sent else "already_sent"
    log.info("recap user=%s week=%s status=%s recap_source=%s", user_id, week, status, source)
    return {**outcome, "status": status, "recap_source": source, "message_id": message["Message-ID"]}


def count_outcomes(outcomes: list[dict]) -> dict[str, int]:
    """Users by status, and sent recaps by source (gemini / template), over a run's `send_weekly_recap` results."""
    summary: dict[str, int] = {"users": len(outcomes)}
    for outcome in outcomes:
        summary[outcome["status"]] = summary.get(outcome["status"], 0) + 1
        if outcome.get("recap_source") and outcome["status"] == "sent":
            key = f"recap_{outcome['recap_source']}"
            summary[key] = summary.get(key, 0) + 1
    return summary
