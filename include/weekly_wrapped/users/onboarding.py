"""The onboarding page: connect Spotify, give the recap e-mail address and the time zone.

A small FastAPI app, served by Airflow's api-server through `plugins/weekly_wrapped_onboarding.py`
at `/wrapped/connect` (so it needs no process of its own):

1. `GET  /connect`  a form: e-mail, IANA time zone (Spotify's 2026 API gives neither) and,
   outside demo mode, an invite code (`users.invites`), unless it was opened from a signed
   reconnect link (`reconnect_url`: only that user's Spotify account can then be connected).
   A cookie and a signed field in the form (double submit) let only this page post the form.
2. `POST /connect`  refuses cross-site posts (Origin/Referer, then the form token), checks the
   invite (failures rate-limited), the address (email-validator: exactly one address) and the
   time zone, then sends the browser to Spotify's consent page with a random `state` and a
   PKCE S256 challenge. The state, the PKCE verifier, the address and the time zone stay in
   an HttpOnly, SameSite=Lax cookie signed with `wrapped_link_secret` (purpose "oauth_state",
   15 minutes): they never travel through Spotify.
3. `GET  /callback` Spotify's redirect. The state must equal the one in this browser's cookie
   (then the cookie is cleared) and not have been used before (`app.oauth_states_used`);
   the code is exchanged with the verifier; a new user is stored with the address
   unconfirmed, an existing one keeps theirs; `users.addresses.ask_to_confirm` mails the
   confirmation link ("check your inbox").

Every outcome is a friendly page; codes and states stay out of the logs (`users.access_log`).
It reads the same Connections and Variables as the DAGs (`OnboardingConfig.from_airflow`).
"""

from __future__ import annotations

import hashlib
import html
import logging
import secrets
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import parse_qs, urlsplit
from zoneinfo import available_timezones

import psycopg2
import requests
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from spotipy.exceptions import SpotifyException

from weekly_wrapped import db
from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.users import accounts as users
from weekly_wrapped.users import addresses, invites, links

log = logging.getLogger(__name__)

STATE_COOKIE = "wrapped_oauth"
FORM_COOKIE = "wrapped_form"
FORM_TOKEN_MAX_AGE_S = 2 * 3600  # how long a loaded form may wait before it is sent
STATE_TTL_S = links.MAX_AGE_S["oauth_state"]


@dataclass(frozen=True)
class OnboardingConfig:
    dsn: str = field(repr=False)
    spotify_app: spotify.SpotifyApp
    token_secret: str = field(repr=False)  # Fernet keys for the stored refresh tokens
    link_secret: str = field(repr=False)  # signs the OAuth state cookie, links and cookies (users.links)
    demo_mode: bool = False  # True: anyone reaching the page may join, no invite
    public_url: str = ""  # the api-server as people reach it (links in e-mails)

    @classmethod
    def from_airflow(cls) -> "OnboardingConfig":
        from weekly_wrapped.airflow import connections as conns

        return cls(dsn=conns.warehouse_dsn(), spotify_app=conns.spotify_app(),
                   token_secret=conns.variable("wrapped_token_secret"),
                   link_secret=conns.variable("wrapped_link_secret"),
                   demo_mode=conns.variable("wrapped_demo_mode") == "true",
                   public_url=conns.variable("wrapped_public_url"))


COMMON_ZONES = ("Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles",
                "America/Sao_Paulo", "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney", "UTC")
# Sent with every page: no framing (clickjacking), no caching, and no Referer to Spotify.
# "same-origin", not "no-referrer": under no-referrer browsers send `Origin: null` with the
# form's own POST, which the cross-site check must refuse.
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
                "Content-Security-Policy": "frame-ancestors 'none'"}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}"
        "label{display:block;margin-top:1rem}input,button{font-size:1rem;padding:.4rem;width:100%}"
        "button{margin-top:1.5rem;background:#1db954;color:#fff;border:0;border-radius:2rem}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>", status_code=status,
        headers=PAGE_HEADERS)


def _trouble(message: str, status: int) -> HTMLResponse:
    return _page("Not connected", f"<p>{html.escape(message)}</p><p><a href='connect'>Start again</a>.</p>",
                 status=status)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: Request, config: OnboardingConfig) -> bool:
    """The post comes from this site's own page, as far as the browser tells us.

    Browsers send Origin (or at least Referer) with a form post; no header at all is a non-browser
    client, for which the form token alone decides. The request's own host and `public_url`
    both count (behind a reverse proxy the api-server may see another host than the browser).
    """
    if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return False
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if claimed is None:
        return True
    allowed = {_origin(str(request.base_url))} | ({_origin(config.public_url)} if config.public_url else set())
    return _origin(claimed) in allowed if claimed != "null" else False


def _cookie_path(request: Request) -> str:
    return (request.scope.get("root_path") or "").rstrip("/") + "/"


def _set_cookie(response, request: Request, config: OnboardingConfig, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=_cookie_path(request), httponly=True, samesite="lax",
                        secure=config.public_url.startswith("https://"))


def _clear_cookie(response, request: Request, config: OnboardingConfig, name: str) -> None:
    response.delete_cookie(name, path=_cookie_path(request), httponly=True, samesite="lax",
                           secure=config.public_url.startswith("https://"))


def _form_nonce(request: Request) -> str:
    """This browser's form nonce (from its cookie), or a new one."""
    nonce = request.cookies.get(FORM_COOKIE, "")
    return nonce if 16 <= len(nonce) <= 64 else secrets.token_urlsafe(24)


def _form_token_ok(config: OnboardingConfig, request: Request, token: str) -> bool:
    nonce = request.cookies.get(FORM_COOKIE)
    try:
        payload = links.verify(config.link_secret, "session", token, max_age_s=FORM_TOKEN_MAX_AGE_S)
    except links.LinkError:
        return False
    return bool(nonce) and secrets.compare_digest(str(payload.get("connect_form", "")).encode(), nonce.encode())


def reconnect_url(public_url: str, link_secret: str, user_id: str) -> str:
    """A link for a known user (e-mails asking to reconnect): the page asks no invite code, and only
    this user's Spotify account can be connected through it."""
    token = links.sign(link_secret, "reconnect", {"user_id": user_id})
    return f"{public_url.rstrip('/')}/wrapped/connect?reconnect={token}"


def _reconnecting(config: OnboardingConfig, token: str) -> str | None:
    """The user id a reconnect token was made for, None if there is none, it is not valid, or the
    user is gone (deleted their data: a link from an old e-mail must not let them in uninvited)."""
    if not token:
        return None
    try:
        user_id = str(links.verify(config.link_secret, "reconnect", token)["user_id"])
    except (links.LinkError, KeyError, TypeError):
        return None
    return user_id if users.get_user(config.dsn, user_id) else None


def _form_page(request: Request, config: OnboardingConfig, message: str = "", status: int = 200, *,
               email: str = "", time_zone: str = "", invite: str = "", reconnect: str = "") -> HTMLResponse:
    nonce = _form_nonce(request)
    token = links.sign(config.link_secret, "session", {"connect_form": nonce})
    options = "".join(f"<option value='{z}'>" for z in COMMON_ZONES)
    if _reconnecting(config, reconnect):
        invite_field = f"<input type='hidden' name='reconnect' value='{html.escape(reconnect)}'>"
    elif config.demo_mode:
        invite_field = ""
    else:
        invite_field = ("<label>Invite code (from whoever runs this Weekly Wrapped)"
                        "<input name='invite' type='password' required autocomplete='off' "
                        f"value='{html.escape(invite)}'></label>")
    error = f"<p style='color:#b00'>{html.escape(message)}</p>" if message else ""
    body = (f"{error}<p>Every Monday morning, a recap of your week on Spotify.</p>"
            # An explicit action: the page's own query (an invite code) is not sent on.
            "<form method='post' action='connect'>"
            f"<input type='hidden' name='csrf' value='{html.escape(token)}'>"
            "<label>E-mail for your recap (we send a link to confirm it)"
            f"<input name='email' type='email' required value='{html.escape(email)}'></label>"
            "<label>Your time zone (weeks start Monday 00:00 there)"
            f"<input name='time_zone' list='zones' required value='{html.escape(time_zone or 'Europe/Berlin')}'>"
            f"</label><datalist id='zones'>{options}</datalist>{invite_field}"
            "<button type='submit'>Connect Spotify</button></form>"
            "<p><small>We read only your recently played tracks. Every recap has a link to stop the e-mails "
            "and to delete your data; you can also disconnect any time in your Spotify account settings."
            "</small></p><p><small><a href='account/delete'>Delete my data</a></small></p>")
    response = _page("Weekly Wrapped", body, status)
    _set_cookie(response, request, config, FORM_COOKIE, nonce, FORM_TOKEN_MAX_AGE_S)
    return response


def mark_state_used(dsn: str, state: str) -> bool:
    """Remember a state as used until it would have expired anyway; False if it was used before."""
    with db.transaction(dsn) as cur:
        cur.execute("delete from app.oauth_states_used where expires_at < now()")
        cur.execute("insert into app.oauth_states_used (state_sha256, expires_at) "
                    "values (%s, now() + make_interval(secs => %s)) on conflict do nothing",
                    (hashlib.sha256(state.encode()).hexdigest(), STATE_TTL_S))
        return cur.rowcount == 1


def _address_outcome(dsn: str, user_id: str) -> tuple[bool, bool]:
    """(waiting for a confirmation, had a confirmed address before)."""
    with db.transaction(dsn) as cur:
        cur.execute("select pending_email is not null, email_confirmed_at is not null from app.users "
                    "where user_id = %s", (user_id,))
        return cur.fetchone()


def add_friendly_errors(app: FastAPI, trouble: Callable[[str, int], HTMLResponse], what: str,
                        message: str) -> None:
    """A request we cannot read is a 400 page, anything unexpected (a database down, a setting
    missing) a 503 page with `message`: never a bare 500. The log gets the exception's type only:
    messages can carry URLs, addresses or tokens."""

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> HTMLResponse:
        return trouble("This request was not one we understand.", 400)

    @app.middleware("http")
    async def friendly_errors(request: Request, call_next):
        try:
            return await call_next(request)
        except Exception as exc:
            log.error("%s failed: %s", what, type(exc).__name__)
            return trouble(message, 503)


def create_app(config_factory: Callable[[], OnboardingConfig] = OnboardingConfig.from_airflow) -> FastAPI:
    """The page; `config_factory` is called per request, so edited Connections apply at once."""
    app = FastAPI(title="Weekly Wrapped onboarding", docs_url=None, redoc_url=None, openapi_url=None)

    add_friendly_errors(app, _trouble, "onboarding page",
                        "Something went wrong on our side. Nothing was connected; please try again later.")

    @app.get("/me")
    def your_page() -> RedirectResponse:
        # /wrapped/me (no slash) reaches this app, mounted at /wrapped; the page app is at /wrapped/me/.
        return RedirectResponse("me/", status_code=307)

    @app.get("/connect")
    def connect_form(request: Request, invite: str = "", reconnect: str = "") -> HTMLResponse:
        config = config_factory()
        if reconnect and not _reconnecting(config, reconnect):
            return _form_page(request, config, "This reconnect link has expired: ask whoever runs Weekly Wrapped "
                                               "for an invite code.", invite=invite[:100])
        return _form_page(request, config, invite=invite[:100], reconnect=reconnect[:500])

    @app.post("/connect")
    async def connect(request: Request):
        config = config_factory()
        form = {k: v[-1].strip() for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        email, time_zone, code = form.get("email", ""), form.get("time_zone", ""), form.get("invite", "")
        reconnect = form.get("reconnect", "")
        if not same_origin(request, config):
            return _page("Not sent", "<p>This form can only be sent from Weekly Wrapped's own page. "
                                     "<a href='connect'>Open it here</a>.</p>", status=403)
        if not _form_token_ok(config, request, form.get("csrf", "")):
            return _form_page(request, config, "This form was open too long or came from elsewhere. "
                                               "Please send it again.", 403, email=email, time_zone=time_zone)
        invite_sha256 = None
        only_user = _reconnecting(config, reconnect)
        if not config.demo_mode and not only_user:
            if invites.too_many_failures(config.dsn, code):
                return _page("Too many tries", f"<p>Too many wrong invite codes were tried. Please wait "
                                               f"{invites.ATTEMPT_WINDOW_MIN} minutes and try again.</p>", 429)
            if not code or not invites.usable(config.dsn, code):
                invites.record_attempt(config.dsn, code, succeeded=False)
                return _form_page(request, config, "That invite code is not right (or was revoked).", 403,
                                  email=email, time_zone=time_zone)
            invites.record_attempt(config.dsn, code, succeeded=True)
            invite_sha256 = invites.code_hash(code)
        try:
            email = users.check_profile(email, time_zone)
        except users.OnboardingError as exc:
            hint = "" if time_zone in available_timezones() else " (e.g. Europe/Berlin)"
            return _form_page(request, config, f"{exc}{hint}", 400, email=email, time_zone=time_zone, invite=code,
                              reconnect=reconnect)
        state = secrets.token_urlsafe(32)
        verifier, challenge = spotify.pkce_pair()
        cookie = links.sign(config.link_secret, "oauth_state", {
            "state": state, "verifier": verifier, "email": email, "time_zone": time_zone, "invite": invite_sha256,
            "only_user": only_user})
        response = RedirectResponse(spotify.authorize_url(config.spotify_app, state=state, code_challenge=challenge),
                                    status_code=303, headers=PAGE_HEADERS)
        _set_cookie(response, request, config, STATE_COOKIE, cookie, STATE_TTL_S)
        return response

    @app.get("/callback")
    def callback(request: Request, state: str = "", code: str = "", error: str = "") -> HTMLResponse:
        config = config_factory()
        response = _callback(request, config, state, code, error)
        _clear_cookie(response, request, config, STATE_COOKIE)  # a state is good once, whatever happened
        return response

    def _callback(request: Request, config: OnboardingConfig, state: str, code: str, error: str) -> HTMLResponse:
        if error:
            return _trouble(f"Spotify said: {error[:100]}. Nothing was connected.", 400)
        if not code or not state:
            return _trouble("This link is incomplete: Spotify's answer had no code or no state.", 400)
        cookie = request.cookies.get(STATE_COOKIE)
        if not cookie:
            return _trouble("This browser did not start connecting (or it took too long). Connect from the "
                            "Weekly Wrapped page, in the same browser.", 400)
        try:
            started = links.verify(config.link_secret, "oauth_state", cookie)
        except links.LinkError as exc:
            return _trouble("Connecting took longer than 15 minutes." if exc.expired
                            else "This link was not ours.", 400)
        if not secrets.compare_digest(str(started.get("state", "")).encode(), state.encode()):
            return _trouble("This answer from Spotify does not belong to what this browser started.", 400)
        if not mark_state_used(config.dsn, state):
            return _trouble("This link was already used.", 400)
        try:
            user_id = users.onboard_with_code(
                config.dsn, config.token_secret, config.spotify_app, code=code, email=started["email"],
                time_zone=started["time_zone"], code_verifier=started["verifier"], invite_sha256=started["invite"],
                only_user_id=started.get("only_user"))
        except invites.InviteError as exc:
            return _trouble(f"Your invite cannot be used: {exc}.", 403)
        except users.OnboardingError as exc:
            return _trouble(f"{exc}.", 400)
        except (requests.RequestException, SpotifyException) as exc:
            log.warning("Spotify unreachable at the onboarding callback: %s", type(exc).__name__)
            return _trouble("We could not reach Spotify. Please try again in a few minutes.", 502)
        except psycopg2.Error as exc:
            log.error("warehouse unreachable at the onboarding callback: %s", type(exc).__name__)
            return _trouble("Our database is not answering. Please try again later.", 503)
        email = html.escape(started["email"])
        try:
            addresses.ask_to_confirm(config, user_id, started["email"])
        except Exception as exc:  # the user is stored; only the e-mail failed
            log.error("could not send the address confirmation: %s", type(exc).__name__)
            return _page("Connected, but…", f"<p>Spotify is connected, but we could not send the e-mail that "
                                            f"confirms <b>{email}</b>. <a href='connect'>Connect again</a> "
                                            "later to get a new one.</p>", status=503)
        waiting, had_confirmed = _address_outcome(config.dsn, user_id)
        if not waiting:
            return _page("You're connected", f"<p>Spotify is connected again. Your recaps keep going to "
                                             f"<b>{email}</b> on Monday mornings.</p>")
        later = ("Until then your recaps keep going to your current address." if had_confirmed
                 else "Your first recap follows on the Monday after you confirm it.")
        return _page("Check your inbox", f"<p>Spotify is connected. We sent a link to <b>{email}</b>: open it "
                                         f"within {links.MAX_AGE_S['confirm_email'] // 86400} days to confirm "
                                         f"the address. {later}</p>")

    return app
