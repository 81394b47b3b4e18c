"""The demo's listeners: onboarded from the fake Spotify through the real OAuth code flow."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlparse

import requests

from weekly_wrapped import db
from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.users import accounts



def fake_demo_users(accounts_base: str) -> list[dict]:
    """The fake Spotify's demo listeners: user_id, display_name, email, time_zone."""
    r = requests.get(f"{accounts_base.rstrip('/')}/_control/users", timeout=10)
    r.raise_for_status()
    return r.json()["users"]


def authorize_on_fake(app: spotify.SpotifyApp, fake_user: str, code_challenge: str | None = None) -> str:
    """Walk the fake's consent screen as `fake_user` and return the authorization code
    (with `code_challenge`, PKCE S256 as the onboarding page does it)."""
    state = secrets.token_urlsafe(12)
    if code_challenge:
        url = spotify.authorize_url(app, state=state, code_challenge=code_challenge)
    else:
        url = spotify.make_oauth(app, state=state).get_authorize_url()
    r = requests.get(url + "&" + f"fake_user={fake_user}", allow_redirects=False, timeout=10)
    if r.status_code != 302:
        raise accounts.OnboardingError(f"authorize answered {r.status_code}, expected a redirect")
    query = parse_qs(urlparse(r.headers["Location"]).query)
    if query.get("state", [None])[0] != state:
        raise accounts.OnboardingError("state mismatch on the authorization redirect")
    if "error" in query:
        raise accounts.OnboardingError(f"authorization denied: {query['error'][0]}")
    return query["code"][0]


def onboard_demo_users(settings, dsn: str | None = None, app: spotify.SpotifyApp | None = None,
                       user_ids: list[str] | None = None) -> list[str]:
    """Onboard the fake Spotify's demo users (authorize -> code -> token -> /me -> app.users).

    Idempotent: re-running gives each user a new refresh token and sets them active
    again; cursors are kept. The demo's addresses count as confirmed (set directly: this is
    the dev harness, its mail goes to the local sink). Returns the onboarded user ids.
    """
    dsn = dsn or settings.warehouse_dsn
    app = app or settings.spotify_app
    onboarded = []
    for u in fake_demo_users(app.accounts):
        if user_ids is not None and u["user_id"] not in user_ids:
            continue
        verifier, challenge = spotify.pkce_pair()
        code = authorize_on_fake(app, u["user_id"], challenge)
        onboarded.append(accounts.onboard_with_code(dsn, settings.token_secret, app, code=code, code_verifier=verifier,
                                                    email=u["email"], time_zone=u["time_zone"]))
    # The demo's addresses all land in the local SMTP sink: count them as confirmed (no double opt-in).
    with db.transaction(dsn) as cur:
        cur.execute("update app.users set email_confirmed_at = coalesce(email_confirmed_at, now()), "
                    "pending_email = null where user_id = any(%s)", (onboarded,))
    return onboarded
