"""Who may see a page: signed links that open it, the session cookie, the "send me a link" e-mail.

- Every recap e-mail carries `page_link_url` (purpose "page_link", 14 days); the page's form
  mails `login_url` (purpose "page_login", 30 minutes) to an account's confirmed address.
- Opening either sets the session cookie `wrapped_session` (purpose "session", 30 days; payload
  {user_id, issued}), HttpOnly, SameSite=Lax, Secure when public_url is https.
- `session_user` decides whose page is shown: the URL never carries a user id. A cookie counts
  only while its user exists and was created before the cookie was issued, so a deleted
  account's cookie stays refused even if the same Spotify account joins again.
- `form_token` binds the page's forms to the session (CSRF), beside the Origin check.

Links and cookies are signed with `wrapped_link_secret` (users.links); tokens are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import time

from weekly_wrapped import db
from weekly_wrapped.users import links, notices

PAGE_PATH = "/wrapped/me"
SESSION_COOKIE = "wrapped_session"
SESSION_MAX_AGE_S = links.MAX_AGE_S["session"]
# The "send me a link" form mails an account at most this often, however often it is sent.
LOGIN_MAIL_EVERY_S = 2 * 60
# Clock slack between this process and Postgres when comparing `issued` with created_at.
CLOCK_SLACK_S = 2


def page_link_url(public_url: str, link_secret: str, user_id: str) -> str:
    """The recap e-mail's "your page" link."""
    token = links.sign(link_secret, "page_link", {"user_id": user_id})
    return f"{public_url.rstrip('/')}{PAGE_PATH}/link?token={token}"


def login_url(public_url: str, link_secret: str, user_id: str) -> str:
    token = links.sign(link_secret, "page_login", {"user_id": user_id})
    return f"{public_url.rstrip('/')}{PAGE_PATH}/login?token={token}"


def user_of_link(dsn: str, link_secret: str, purpose: str, token: str) -> str:
    """The user a page link or login link was made for; LinkError when forged, expired or of another
    purpose, LookupError when that user no longer exists."""
    payload = links.verify(link_secret, purpose, token)
    user_id = payload.get("user_id") if isinstance(payload, dict) else None
    if not isinstance(user_id, str) or _created_at(dsn, user_id) is None:
        raise LookupError("no such user")
    return user_id


def session_cookie(link_secret: str, user_id: str) -> str:
    return links.sign(link_secret, "session", {"user_id": user_id, "issued": time.time()})


def session_user(dsn: str, link_secret: str, cookie: str | None) -> str | None:
    """The user id of a valid session cookie, or None (none, forged, expired, another purpose's token,
    another secret's, or a user deleted since)."""
    if not cookie:
        return None
    try:
        payload = links.verify(link_secret, "session", cookie)
    except links.LinkError:
        return None
    if not isinstance(payload, dict):
        return None
    user_id, issued = payload.get("user_id"), payload.get("issued")
    if not isinstance(user_id, str) or not isinstance(issued, (int, float)):
        return None  # e.g. the onboarding form's token, also of purpose "session"
    created_at = _created_at(dsn, user_id)
    if created_at is None or issued < created_at.timestamp() - CLOCK_SLACK_S:
        return None
    return user_id


def _created_at(dsn: str, user_id: str):
    with db.transaction(dsn) as cur:
        cur.execute("select created_at from app.users where user_id = %s", (user_id,))
        row = cur.fetchone()
    return row[0] if row else None


def form_token(link_secret: str, cookie: str) -> str:
    """The hidden field of the page's forms: an HMAC of this browser's session cookie, which another
    site can neither read nor compute."""
    return hmac.new(link_secret.encode(), b"page-form:" + cookie.encode(), hashlib.sha256).hexdigest()


def form_token_ok(link_secret: str, cookie: str | None, token: str) -> bool:
    return bool(cookie) and hmac.compare_digest(form_token(link_secret, cookie).encode(), (token or "").encode())


def mail_login_link(dsn: str, link_secret: str, public_url: str, email: str) -> bool:
    """Mail a login link to the account whose confirmed recap address is `email`, at most once per
    LOGIN_MAIL_EVERY_S; True if one was sent. The caller answers the same either way."""
    with db.transaction(dsn) as cur:
        cur.execute(
            """
            update app.users set page_link_mail_sent_at = now()
            where user_id = (select user_id from app.users
                             where lower(email) = lower(%(email)s) and email_confirmed_at is not null
                             order by user_id limit 1)
              and (page_link_mail_sent_at is null
                   or page_link_mail_sent_at < now() - make_interval(secs => %(every)s))
            returning user_id, email
            """,
            {"email": email.strip()[:320], "every": LOGIN_MAIL_EVERY_S})
        row = cur.fetchone()
    if row is None:
        return False
    user_id, address = row
    url = login_url(public_url, link_secret, user_id)
    minutes = links.MAX_AGE_S["page_login"] // 60
    try:
        notices.send_notice(
            to=address,
            subject="Your Weekly Wrapped page",
            text=(f"Open your Weekly Wrapped page with this link (it works for {minutes} minutes):\n{url}\n\n"
                  "If you did not ask for it, ignore this e-mail: nobody else got the link.\n"),
            html=(f"<p><a href=\"{html.escape(url)}\">Open your Weekly Wrapped page</a> (the link works for "
                  f"{minutes} minutes).</p><p>If you did not ask for it, ignore this e-mail: nobody else got "
                  "the link.</p>"),
        )
    except Exception:
        with db.transaction(dsn) as cur:  # not sent: the next request may try again at once
            cur.execute("update app.users set page_link_mail_sent_at = null where user_id = %s", (user_id,))
        raise
    return True
