"""Operator alerts: one e-mail per problem to `wrapped_admin_email`, not one per retry or run.

A problem has a key saying what it is (`dag_failed:spotify_ingest`, `stale_poll:<user id>`,
`consumer:dying`, `recap_left_out:<user id>:<week>`) and a one-line summary. `app.alerts` keeps
one row per key: since when it lasts, when it was last seen, when it was mailed, when it was
resolved. A check reports what it sees now (`report`): a new problem is mailed once (all new
problems of a check in one e-mail); an ongoing one is not mailed again; a problem of the
check's family that is no longer seen is resolved; one that comes back later is a new
occurrence and is mailed again. A failing DAG run is resolved by the DAG's next successful run
(weekly_wrapped.airflow.alerting).

Pure: the checks' verdicts (`stale_poll_problems`, `consumer_problems`, `recap_problems`,
`dag_failure_problem`). I/O: `report`, `resolve`, `mail_unmailed` and the `check_*` functions
the `wrapped_watch` DAG calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Iterable

from weekly_wrapped import db

log = logging.getLogger(__name__)

# The consumer "keeps dying" when its supervisor found it dead this often within the window
# (one death is a restart that worked; the supervisor itself gives up at 3 in 30 minutes).
CONSUMER_DEATHS, CONSUMER_WINDOW = 2, timedelta(hours=2)
# A due week still not ready this long after it ended everywhere (the last time zone's Monday
# 00:00 is Monday 12:00 UTC) leaves its user out of the weekly send.
NOT_READY_GRACE = timedelta(hours=24)


@dataclass(frozen=True)
class Problem:
    key: str
    summary: str


# --- pure: what each check sees --------------------------------------------------------------

def stale_poll_problems(users: Iterable[dict], now: datetime, hours: float) -> list[Problem]:
    """Active users whose last successful poll (or sign-up, if never polled) is over `hours` old.

    `users`: {"user_id", "created_at", "last_ok_at", "last_outcome", "last_reason"}.
    """
    limit = now - timedelta(hours=hours)
    problems = []
    for user in users:
        since = user["last_ok_at"] or user["created_at"]
        if since < limit:
            polled = f"since {user['last_ok_at']:%Y-%m-%d %H:%M} UTC" if user["last_ok_at"] else "ever"
            last = f"; last outcome {user['last_outcome']}" if user["last_outcome"] else ""
            reason = f" ({user['last_reason'][:200]})" if user["last_reason"] else ""
            problems.append(Problem(f"stale_poll:{user['user_id']}",
                                    f"user {user['user_id']} not polled successfully {polled}{last}{reason}"))
    return problems


def consumer_problems(deaths: Iterable[float], now: datetime) -> list[Problem]:
    """The consumer keeps dying: `deaths` (epoch seconds, from the supervisor) within the window."""
    recent = [d for d in deaths if now.timestamp() - d < CONSUMER_WINDOW.total_seconds()]
    if len(recent) < CONSUMER_DEATHS:
        return []
    return [Problem("consumer:dying",
                    f"the streaming consumer died {len(recent)} times in the last "
                    f"{CONSUMER_WINDOW.total_seconds() / 3600:.0f} hours (see `wrapped logs spark-consumer` "
                    f"or spark-consumer.log in its work dir)")]


def recap_problems(outcomes: Iterable[dict], not_ready: Iterable[dict], now: datetime) -> list[Problem]:
    """Users the weekly send leaves out: sends that failed, and weeks not ready long after they ended."""
    problems = []
    for outcome in outcomes:
        if outcome.get("status") == "failed":
            problems.append(Problem(f"recap_left_out:{outcome['user_id']}:{outcome['week_start']}",
                                    f"the recap of {outcome['user_id']} for the week of {outcome['week_start']} "
                                    f"failed to send: {str(outcome.get('error', ''))[:200]}"))
    for entry in not_ready:
        ended_everywhere = datetime.combine(date.fromisoformat(entry["week_start"]) + timedelta(days=7),
                                            datetime.min.time(), timezone.utc) + timedelta(hours=12)
        if now - ended_everywhere >= NOT_READY_GRACE:
            hours = (now - ended_everywhere).total_seconds() / 3600
            problems.append(Problem(f"recap_left_out:{entry['user_id']}:{entry['week_start']}",
                                    f"the recap of {entry['user_id']} for the week of {entry['week_start']} is "
                                    f"still not ready {hours:.0f} hours after the week ended ({entry['reason']})"))
    return problems


def dag_failure_key(dag_id: str) -> str:
    return f"dag_failed:{dag_id}"


def dag_failure_problem(dag_id: str, run_id: str | None, reason: str | None) -> Problem:
    return Problem(dag_failure_key(dag_id), f"a run of DAG {dag_id} failed ({run_id or 'unknown run'}: "
                                            f"{reason or 'see its task logs'})")


def alert_text(problems: list[dict]) -> tuple[str, str]:
    """(subject, text) of the one e-mail about these new problems."""
    # Short: Python's e-mail folding puts a long subject on a continuation line (a leading space).
    subject = f"Weekly Wrapped alert: {problems[0]['problem_key']}" if len(problems) == 1 else \
        f"Weekly Wrapped alert: {len(problems)} problems"
    lines = [f"- {p['summary']}\n  (problem {p['problem_key']}, since {p['first_seen_at']:%Y-%m-%d %H:%M} UTC)"
             for p in problems]
    text = ("Weekly Wrapped found new problems:\n\n" + "\n".join(lines) + "\n\n"
            "You get one e-mail per problem, not one per check: these are not mailed again while they last.\n"
            "Once a check passes again its problem is resolved; if it comes back, you hear about it again.\n"
            "All problems and their state: table app.alerts in the warehouse.\n")
    return subject[:70], text


# --- I/O: app.alerts and the e-mail ------------------------------------------------------------

_SEEN = """
insert into app.alerts (problem_key, summary) values (%s, %s)
on conflict (problem_key) do update set
    summary = excluded.summary,
    last_seen_at = now(),
    -- A resolved problem that is seen again is a new occurrence: mailed again.
    first_seen_at = case when app.alerts.resolved_at is null then app.alerts.first_seen_at else now() end,
    last_mailed_at = case when app.alerts.resolved_at is null then app.alerts.last_mailed_at end,
    resolved_at = null
"""


def record(dsn: str, problems: list[Problem], family: str | None = None) -> None:
    """Record the problems seen now; with `family` (a key prefix before ':'), resolve that
    family's open problems that were not seen."""
    with db.transaction(dsn) as cur:
        for problem in sorted(problems, key=lambda p: p.key):  # sorted: concurrent checks lock rows in one order
            cur.execute(_SEEN, (problem.key, problem.summary[:1000]))
        if family is not None:
            cur.execute("update app.alerts set resolved_at = now() where starts_with(problem_key, %s) "
                        "and resolved_at is null and not (problem_key = any(%s))",
                        (f"{family}:", [p.key for p in problems]))


def resolve(dsn: str, key: str) -> None:
    with db.transaction(dsn) as cur:
        cur.execute("update app.alerts set resolved_at = now() where problem_key = %s and resolved_at is null",
                    (key,))


def mail_unmailed(dsn: str, admin_email: str, send: Callable[..., None] | None = None) -> list[str]:
    """One e-mail to the operator about every open problem not mailed yet; returns their keys.

    The problems are marked mailed BEFORE sending (an atomic claim, so two checks at once never
    mail the same problem). A send that surely failed takes the mark back (the next check tries
    again); a send whose reply was lost keeps it: the server most likely has the message, and one
    alert is the goal, so a lost reply is not worth a probable duplicate.
    """
    if not admin_email.strip():
        return []  # no operator address: problems are recorded in app.alerts only
    from weekly_wrapped.recap.mailer import DeliveryUnknown

    if send is None:
        from weekly_wrapped.users.notices import send_notice as send
    with db.transaction(dsn) as cur:
        cur.execute("update app.alerts set last_mailed_at = now() where resolved_at is null "
                    "and last_mailed_at is null returning problem_key, summary, first_seen_at, last_mailed_at")
        claimed = [dict(zip(("problem_key", "summary", "first_seen_at", "last_mailed_at"), row))
                   for row in cur.fetchall()]
    if not claimed:
        return []
    claimed.sort(key=lambda p: (p["first_seen_at"], p["problem_key"]))
    subject, text = alert_text(claimed)
    keys = [p["problem_key"] for p in claimed]
    try:
        send(to=admin_email.strip(), subject=subject, text=text)
    except DeliveryUnknown:
        log.warning("alert e-mail about %s: the server's reply was lost; counted as sent", keys)
    except Exception:
        with db.transaction(dsn) as cur:
            cur.execute("update app.alerts set last_mailed_at = null where problem_key = any(%s) "
                        "and last_mailed_at = %s", (keys, claimed[0]["last_mailed_at"]))
        raise
    log.info("alerted %s about %s", admin_email, keys)
    return keys


def report(dsn: str, admin_email: str, problems: list[Problem], family: str | None = None,
           send: Callable[..., None] | None = None) -> list[str]:
    """Record what a check sees (see `record`) and mail what is new; returns the keys mailed."""
    record(dsn, problems, family)
    return mail_unmailed(dsn, admin_email, send)


# --- I/O: the checks the wrapped_watch DAG runs ------------------------------------------------

_POLL_STATE = """
select u.user_id, u.created_at, ok.last_ok_at, last.outcome, last.reason
from app.users u
left join lateral (
    select max(o.created_at) as last_ok_at from app.ingest_outcomes o
    where o.user_id = u.user_id and o.outcome = 'ok'
) ok on true
left join lateral (
    select o.outcome, o.reason from app.ingest_outcomes o where o.user_id = u.user_id order by o.id desc limit 1
) last on true
where u.status = 'active' and u.refresh_token_encrypted is not null
order by u.user_id
"""


def check_stale_polls(dsn: str, admin_email: str, hours: float, now: datetime | None = None,
                      send: Callable[..., None] | None = None) -> list[Problem]:
    """Alert about active users not polled successfully for `hours`; resolve those polled again."""
    with db.transaction(dsn) as cur:
        cur.execute(_POLL_STATE)
        users = [dict(zip(("user_id", "created_at", "last_ok_at", "last_outcome", "last_reason"), row))
                 for row in cur.fetchall()]
    problems = stale_poll_problems(users, now or datetime.now(timezone.utc), hours)
    report(dsn, admin_email, problems, family="stale_poll", send=send)
    return problems


def check_consumer(dsn: str, admin_email: str, deaths: list[float], now: datetime | None = None,
                   send: Callable[..., None] | None = None) -> list[Problem]:
    """Alert when the streaming consumer keeps dying (deaths from `supervisor.recent_deaths`)."""
    problems = consumer_problems(deaths, now or datetime.now(timezone.utc))
    report(dsn, admin_email, problems, family="consumer", send=send)
    return problems


def check_recap_send(dsn: str, admin_email: str, outcomes: list[dict], not_ready: list[dict],
                     now: datetime | None = None, send: Callable[..., None] | None = None) -> list[Problem]:
    """Alert about users a weekly_wrapped run left out (its outcomes and not_ready weeks)."""
    problems = recap_problems(outcomes, not_ready, now or datetime.now(timezone.utc))
    report(dsn, admin_email, problems, family="recap_left_out", send=send)
    return problems
