"""The recap address, confirmed by its owner (double opt-in) before any recap goes to it.

A user has exactly one address in use (`app.users.email`) and at most one waiting for its
confirmation (`pending_email`). `ask_to_confirm` records the new one as pending and mails it a
signed link (`users.links`, purpose "confirm_email", payload user id + address); `confirm`
(the page behind that link) makes it the address in use. Until then the old address, if it
was confirmed, keeps getting the recaps, so nobody can redirect someone's recap by typing
another address. A link for an address that was replaced since does nothing.

Recaps go only to `status = 'active' and email_confirmed_at is not null` (recap.store).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

from email_validator import EmailNotValidError, validate_email

from weekly_wrapped import db
from weekly_wrapped.users import links, notices

if TYPE_CHECKING:
    from weekly_wrapped.users.onboarding import OnboardingConfig

CONFIRM_PATH = "/wrapped/account/confirm"


class AddressError(ValueError):
    """Not a single, valid e-mail address."""


def normalized(email: str) -> str:
    """The address as email-validator normalizes it; AddressError unless it is exactly one address."""
    try:
        return validate_email(email or "", check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise AddressError(f"not an e-mail address: {email!r}") from exc


def confirm_url(public_url: str, link_secret: str, user_id: str, email: str) -> str:
    token = links.sign(link_secret, "confirm_email", {"user_id": user_id, "email": email})
    return f"{public_url.rstrip('/')}{CONFIRM_PATH}?token={token}"


def ask_to_confirm(config: "OnboardingConfig", user_id: str, email: str) -> None:
    """Record `email` as the user's pending address and mail it a confirmation link.

    The address in use stays until the new one is confirmed. Asking for the address that is
    already in use and confirmed only drops a pending change. Raises AddressError for a bad
    address, LookupError for an unknown user, and whatever sending raises.
    """
    email = normalized(email)
    with db.transaction(config.dsn) as cur:
        cur.execute("select email, email_confirmed_at from app.users where user_id = %s for update", (user_id,))
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"no user {user_id!r}")
        current, confirmed_at = row
        already_confirmed = confirmed_at is not None and current.lower() == email.lower()
        cur.execute("update app.users set pending_email = %s, updated_at = now() where user_id = %s",
                    (None if already_confirmed else email, user_id))
    if already_confirmed:
        return
    url = confirm_url(config.public_url, config.link_secret, user_id, email)
    days = links.MAX_AGE_S["confirm_email"] // 86400
    notices.send_notice(
        to=email,
        subject="Confirm your address for Weekly Wrapped",
        text=(f"Someone (hopefully you) asked for Weekly Wrapped's weekly Spotify recap at this address.\n\n"
              f"Confirm it by opening this link within {days} days:\n{url}\n\n"
              "If it was not you, ignore this e-mail: nothing is sent to this address without it.\n"),
        html=(f"<p>Someone (hopefully you) asked for Weekly Wrapped's weekly Spotify recap at this address.</p>"
              f"<p><a href=\"{html.escape(url)}\">Confirm this address</a> (within {days} days).</p>"
              "<p>If it was not you, ignore this e-mail: nothing is sent to this address without it.</p>"),
    )


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation link did: `confirmed` (now in use), `already` (clicked before),
    `replaced` (another address was asked for since, or the user is gone)."""

    outcome: str
    email: str


def confirm(dsn: str, link_secret: str, token: str) -> Confirmation:
    """Make the link's address the user's address in use, if it is still the pending one.

    Raises links.LinkError for a forged, foreign or expired token.
    """
    payload = links.verify(link_secret, "confirm_email", token)
    user_id, email = payload["user_id"], payload["email"]
    with db.transaction(dsn) as cur:
        cur.execute(
            "update app.users set email = pending_email, email_confirmed_at = now(), pending_email = null, "
            "updated_at = now() where user_id = %s and pending_email = %s",
            (user_id, email))
        if cur.rowcount:
            return Confirmation("confirmed", email)
        cur.execute("select 1 from app.users where user_id = %s and email = %s and email_confirmed_at is not null",
                    (user_id, email))
        return Confirmation("already" if cur.fetchone() else "replaced", email)
