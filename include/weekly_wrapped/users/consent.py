"""Consent that lasts: Spotify refresh tokens die six months after consent, so people hear from
us before that, and once when they must reconnect.

- The reminder: two weeks before the token's end (consent_at + 6 months - 14 days), one e-mail
  with the user's signed reconnect link ({public_url}/wrapped/connect?reconnect=...).
- The reconnect notice: once a user is `needs_reauth` (token expired, revoked or undecryptable),
  one e-mail, not one per hourly check.
- Reconnecting renews `consent_at`, which re-arms both: a notice sent before the current
  consent counts for nothing.
Only to confirmed addresses (`email_confirmed_at is not null`); never to unsubscribed users.

Pure: `token_expires_at`, `reminder_due`, `reauth_notice_due`. I/O: `send_due_notices`
(what the `wrapped_watch` DAG calls), sending through `users.notices.send_notice`.
"""

from __future__ import annotations

import calendar
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from weekly_wrapped import db

log = logging.getLogger(__name__)

TOKEN_LIFETIME_MONTHS = 6
REMIND_BEFORE = timedelta(days=14)


@dataclass(frozen=True)
class ConsentState:
    user_id: str
    display_name: str | None
    email: str
    status: str
    consent_at: datetime | None
    consent_reminder_sent_at: datetime | None
    reauth_notice_sent_at: datetime | None


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later (the month's last day when it is shorter)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def token_expires_at(consent_at: datetime) -> datetime:
    return add_months(consent_at, TOKEN_LIFETIME_MONTHS)


def _sent_for_this_consent(sent_at: datetime | None, consent_at: datetime | None) -> bool:
    return sent_at is not None and (consent_at is None or sent_at >= consent_at)


def reminder_due(user: ConsentState, now: datetime) -> bool:
    """Active, within the last two weeks of the consent, and not reminded since consenting."""
    if user.status != "active" or user.consent_at is None:
        return False
    if _sent_for_this_consent(user.consent_reminder_sent_at, user.consent_at):
        return False
    expires = token_expires_at(user.consent_at)
    return expires - REMIND_BEFORE <= now < expires  # after that, needs_reauth takes over


def reauth_notice_due(user: ConsentState, now: datetime) -> bool:
    """needs_reauth and not told since the last consent."""
    return user.status == "needs_reauth" and not _sent_for_this_consent(user.reauth_notice_sent_at,
                                                                         user.consent_at)


def reminder_text(user: ConsentState, reconnect_url: str) -> tuple[str, str]:
    expires = token_expires_at(user.consent_at)  # type: ignore[arg-type]
    greeting = f"Hi {user.display_name}," if user.display_name else "Hi,"
    return (f"Weekly Wrapped: reconnect Spotify before {expires:%d %B %Y}",
            f"{greeting}\n\n"
            f"Spotify lets Weekly Wrapped read your listening for six months after you connect it; "
            f"yours runs out on {expires:%d %B %Y}. To keep your weekly recap coming, connect again "
            f"(it takes a minute, and your history stays as it is):\n\n"
            f"{reconnect_url}\n\n"
            f"We send this reminder once.\n")


def reauth_text(user: ConsentState, reconnect_url: str) -> tuple[str, str]:
    greeting = f"Hi {user.display_name}," if user.display_name else "Hi,"
    return ("Weekly Wrapped: please reconnect Spotify",
            f"{greeting}\n\n"
            f"Weekly Wrapped can no longer read your Spotify listening (the connection expired or was "
            f"revoked), so your weekly recaps will stop. To get them again, connect Spotify here:\n\n"
            f"{reconnect_url}\n\n"
            f"We send this once; nothing more comes until you reconnect.\n")


# --- I/O -------------------------------------------------------------------------------------

_CANDIDATES = """
select user_id, display_name, email, status, consent_at, consent_reminder_sent_at, reauth_notice_sent_at
from app.users
where status in ('active', 'needs_reauth') and email_confirmed_at is not null
order by user_id
"""

# Claims: the mark is set only while the notice is still due (another run may have sent it).
# greatest(): the mark is never earlier than consent_at, even if the clocks that wrote them differ.
_CLAIM = {
    "reminder": """
        update app.users set consent_reminder_sent_at = greatest(now(), consent_at)
        where user_id = %(user_id)s and consent_at = %(consent_at)s and status = 'active'
          and email_confirmed_at is not null
          and (consent_reminder_sent_at is null or consent_reminder_sent_at < consent_at)
        returning email, consent_reminder_sent_at""",
    "reauth": """
        update app.users set reauth_notice_sent_at = greatest(now(), coalesce(consent_at, now()))
        where user_id = %(user_id)s and status = 'needs_reauth' and email_confirmed_at is not null
          and (reauth_notice_sent_at is null or reauth_notice_sent_at < consent_at)
        returning email, reauth_notice_sent_at""",
}
_COLUMN = {"reminder": "consent_reminder_sent_at", "reauth": "reauth_notice_sent_at"}


def send_due_notices(dsn: str, public_url: str, link_secret: str, now: datetime | None = None,
                     send: Callable[..., None] | None = None) -> dict[str, int]:
    """Send every due reminder and reconnect notice once; returns counts.

    The link in them is the user's own signed reconnect link (`onboarding.reconnect_url`): it
    needs no invite code and connects only that user's Spotify account.

    Each notice is marked sent BEFORE it is sent (an atomic claim, so a rerun or a second run at
    once never sends it again). A send that surely failed (server down, refused) takes the mark
    back and is tried by the next run; a send whose reply was lost keeps it: the server most
    likely has the message, and one e-mail is the goal, so we accept a rare lost notice rather
    than a probable duplicate. Raises after trying everyone if any send failed.
    """
    from weekly_wrapped.recap.mailer import DeliveryUnknown
    from weekly_wrapped.users.onboarding import reconnect_url

    if send is None:
        from weekly_wrapped.users.notices import send_notice as send
    now = now or datetime.now(timezone.utc)
    with db.transaction(dsn) as cur:
        cur.execute(_CANDIDATES)
        users = [ConsentState(*row) for row in cur.fetchall()]
    counts = {"reminders": 0, "reauth_notices": 0, "failed": 0}
    failures = []
    for user in users:
        kind = "reminder" if reminder_due(user, now) else "reauth" if reauth_notice_due(user, now) else None
        if kind is None:
            continue
        previous = user.consent_reminder_sent_at if kind == "reminder" else user.reauth_notice_sent_at
        with db.transaction(dsn) as cur:
            cur.execute(_CLAIM[kind], {"user_id": user.user_id, "consent_at": user.consent_at})
            claimed = cur.fetchone()
        if claimed is None:
            continue  # sent by another run meanwhile, or no longer due
        subject, text = (reminder_text if kind == "reminder" else reauth_text)(
            user, reconnect_url(public_url, link_secret, user.user_id))
        try:
            send(to=claimed[0], subject=subject, text=text)
        except DeliveryUnknown:
            log.warning("%s to user %s: the server's reply was lost; counted as sent", kind, user.user_id)
        except Exception as exc:  # noqa: BLE001 - one address must not stop the others
            with db.transaction(dsn) as cur:
                cur.execute(f"update app.users set {_COLUMN[kind]} = %s where user_id = %s and {_COLUMN[kind]} = %s",
                            (previous, user.user_id, claimed[1]))
            log.error("%s to user %s not sent: %s: %s", kind, user.user_id, type(exc).__name__, exc)
            counts["failed"] += 1
            failures.append(user.user_id)
            continue
        counts["reminders" if kind == "reminder" else "reauth_notices"] += 1
    log.info("consent notices: %s", counts)
    if failures:
        raise RuntimeError(f"{len(failures)} consent notice(s) not sent (tried again next run): {failures[:10]}")
    return counts
