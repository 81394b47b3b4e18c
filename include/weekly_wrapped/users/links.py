"""Signed, expiring tokens for links and cookies: confirm an address, unsubscribe, delete
one's data, reconnect, the OAuth state cookie, a page session, the links that open one's page.

One secret (Variable `wrapped_link_secret`) signs them all; each use has its own `purpose`
(itsdangerous's salt), so a token made for one purpose is refused for every other. The
payload is signed, not encrypted: put ids in it, never secrets.
"""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

# Purposes, and how long a token of each stays valid (seconds).
MAX_AGE_S = {
    "confirm_email": 7 * 24 * 3600,
    "unsubscribe": 365 * 24 * 3600,  # a link in an old e-mail should still stop the e-mails
    "delete_request": 365 * 24 * 3600,  # "delete my data" in a recap: asks for the e-mailed confirmation
    "delete_data": 24 * 3600,  # the e-mailed confirmation that deletes
    "reconnect": 30 * 24 * 3600,
    "oauth_state": 15 * 60,
    "session": 30 * 24 * 3600,
    "page_link": 14 * 24 * 3600,  # the "your page" link in every recap e-mail
    "page_login": 30 * 60,  # the link the page's "send me a link" form mails
}


class LinkError(ValueError):
    """The token is forged, made for another purpose, or expired (`expired` says which)."""

    def __init__(self, message: str, *, expired: bool = False):
        super().__init__(message)
        self.expired = expired


def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    if purpose not in MAX_AGE_S:
        raise ValueError(f"unknown link purpose {purpose!r}")
    if not secret:
        raise ValueError("no link secret configured (Variable wrapped_link_secret)")
    return URLSafeTimedSerializer(secret, salt=f"weekly-wrapped/{purpose}")


def sign(secret: str, purpose: str, payload: dict) -> str:
    """A URL-safe token carrying `payload` (JSON-able), valid for MAX_AGE_S[purpose]."""
    return _serializer(secret, purpose).dumps(payload)


def verify(secret: str, purpose: str, token: str, max_age_s: int | None = None) -> dict:
    """The payload of a token made by `sign` with the same secret and purpose, or LinkError."""
    try:
        return _serializer(secret, purpose).loads(token or "", max_age=max_age_s or MAX_AGE_S[purpose])
    except SignatureExpired as exc:
        raise LinkError("this link has expired", expired=True) from exc
    except BadSignature as exc:
        raise LinkError("this link is not valid") from exc
