"""The onboarding page: connect Spotify, give the recap e-mail address and the time zone.

A small FastAPI app, served by Airflow's api-server through `plugins/weekly_wrapped_onboarding.py`
at `/wrapped/connect` (so it needs no process of its own):

1. `GET  /connect`  a form: e-mail and IANA time zone (Spotify's 2026 API gives neither);
2. `POST /connect`  checks them and sends the browser to Spotify's consent page; the e-mail
   and time zone travel in the OAuth `state`, Fernet-encrypted (so nobody can forge or read
   them) and valid for 15 minutes;
3. `GET  /callback` Spotify's redirect: exchanges the code (`users.onboard_with_code`) and
   stores the user as active with the encrypted refresh token and `consent_at`.

It reads the same Connections and Variables as the DAGs (`OnboardingConfig.from_airflow`):
the warehouse, the Spotify app (whose `redirect_uri` must be registered with Spotify), the
key that encrypts refresh tokens, and the invite code.

Airflow gives plugin apps no authentication, and a Spotify development app has only five
user slots, so the page guards itself: with the `wrapped_invite_code` Variable set, the form
asks for that code; without it, only browsers on this machine (loopback) may connect.
"""

from __future__ import annotations

import html
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import parse_qs
from zoneinfo import available_timezones

from cryptography.fernet import Fernet, InvalidToken
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.users import accounts as users

STATE_TTL_S = 15 * 60


@dataclass(frozen=True)
class OnboardingConfig:
    dsn: str = field(repr=False)
    spotify_app: spotify.SpotifyApp
    token_secret: str = field(repr=False)  # Fernet keys for the stored refresh tokens
    link_secret: str = field(repr=False)  # signs the OAuth state, links and cookies (users.links)
    demo_mode: bool = False
    public_url: str = ""  # the api-server as people reach it (links in e-mails)
    invite_code: str = field(default="", repr=False)

    @classmethod
    def from_airflow(cls) -> "OnboardingConfig":
        from weekly_wrapped.airflow import connections as conns

        return cls(dsn=conns.warehouse_dsn(), spotify_app=conns.spotify_app(),
                   token_secret=conns.variable("wrapped_token_secret"),
                   link_secret=conns.variable("wrapped_link_secret"),
                   demo_mode=conns.variable("wrapped_demo_mode") == "true",
                   public_url=conns.variable("wrapped_public_url"),
                   invite_code=conns.variable("wrapped_invite_code"))
COMMON_ZONES = ("Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles",
                "America/Sao_Paulo", "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney", "UTC")


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}"
        "label{display:block;margin-top:1rem}input,button{font-size:1rem;padding:.4rem;width:100%}"
        "button{margin-top:1.5rem;background:#1db954;color:#fff;border:0;border-radius:2rem}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>", status_code=status)


def _allowed(request: Request, code: str, given_code: str | None) -> bool:
    """With an invite code: the code must match. Without: only loopback clients."""
    if code:
        return given_code is not None and secrets.compare_digest(given_code.encode(), code.encode())
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "testclient"  # FastAPI's TestClient


def _form(invite_code: str, message: str = "", email: str = "", time_zone: str = "") -> str:
    options = "".join(f"<option value='{z}'>" for z in COMMON_ZONES)
    invite = ("<label>Invite code (from whoever runs this Weekly Wrapped)"
              "<input name='invite' type='password' required></label>") if invite_code else ""
    error = f"<p style='color:#b00'>{html.escape(message)}</p>" if message else ""
    return (f"{error}<p>Every Monday morning, a recap of your week on Spotify.</p>"
            "<form method='post'>"
            f"<label>E-mail for your recap<input name='email' type='email' required value='{html.escape(email)}'></label>"
            "<label>Your time zone (weeks start Monday 00:00 there)"
            f"<input name='time_zone' list='zones' required value='{html.escape(time_zone or 'Europe/Berlin')}'></label>"
            f"<datalist id='zones'>{options}</datalist>{invite}"
            "<button type='submit'>Connect Spotify</button></form>"
            "<p><small>We read only your recently played tracks. You can disconnect any time in "
            "your Spotify account settings.</small></p>")


def create_app(config_factory: Callable[[], OnboardingConfig] = OnboardingConfig.from_airflow) -> FastAPI:
    """The page; `config_factory` is called per request, so edited Connections apply at once."""
    app = FastAPI(title="Weekly Wrapped onboarding")

    @app.get("/connect")
    def connect_form(request: Request) -> HTMLResponse:
        config = config_factory()
        if not config.invite_code and not _allowed(request, "", None):
            return _page("Not here", "<p>This page only opens on the machine that runs Weekly Wrapped "
                                     "(or set an invite code).</p>", status=403)
        return _page("Weekly Wrapped", _form(config.invite_code))

    @app.post("/connect")
    async def connect(request: Request):
        form = {k: v[-1].strip() for k, v in parse_qs((await request.body()).decode()).items()}
        email, time_zone = form.get("email", ""), form.get("time_zone", "")
        config = config_factory()
        if not _allowed(request, config.invite_code, form.get("invite")):
            return _page("Weekly Wrapped", _form(config.invite_code, "That invite code is not right.",
                                                 email, time_zone), status=403)
        try:
            users.check_profile(email, time_zone)
        except users.OnboardingError as exc:
            hint = "" if time_zone in available_timezones() else " (e.g. Europe/Berlin)"
            return _page("Weekly Wrapped", _form(config.invite_code, f"{exc}{hint}", email, time_zone),
                         status=400)
        state = Fernet(config.token_secret.encode()).encrypt(json.dumps({"email": email, "time_zone": time_zone,
                                           "nonce": secrets.token_urlsafe(8)}).encode()).decode()
        return RedirectResponse(spotify.make_oauth(config.spotify_app, state=state).get_authorize_url(), status_code=303)

    @app.get("/callback")
    def callback(state: str = "", code: str = "", error: str = "") -> HTMLResponse:
        config = config_factory()
        if error:
            return _page("Not connected", f"<p>Spotify said: {html.escape(error)}. "
                                          "<a href='connect'>Try again</a>.</p>", status=400)
        try:
            profile = json.loads(Fernet(config.token_secret.encode()).decrypt(state.encode(), ttl=STATE_TTL_S))
        except (InvalidToken, ValueError):
            return _page("Not connected", "<p>This link expired or was not ours. "
                                          "<a href='connect'>Start again</a>.</p>", status=400)
        try:
            user_id = users.onboard_with_code(config.dsn, config.token_secret, config.spotify_app, code=code,
                                              email=profile["email"], time_zone=profile["time_zone"])
        except users.OnboardingError as exc:
            return _page("Not connected", f"<p>{html.escape(str(exc))}. <a href='connect'>Try again</a>.</p>",
                         status=400)
        return _page("You're in", f"<p>Spotify account <b>{html.escape(user_id)}</b> is connected. "
                                  f"Your first recap goes to <b>{html.escape(profile['email'])}</b> on Monday "
                                  f"morning, {html.escape(profile['time_zone'])} time.</p>")

    return app
