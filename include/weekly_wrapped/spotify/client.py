"""spotipy, configured for Weekly Wrapped: real Spotify or the local fake, and no hidden sleeps.

- The API and Accounts base URLs are configurable (the fake Spotify in the demo and
  tests): `sp.prefix` is set after construction and the token/authorize URLs are
  overridden on the `SpotifyOAuth` instance (spotipy has no constructor argument).
- spotipy normally mounts a urllib3 `Retry` that honours `Retry-After` by sleeping,
  which can be hours on a 429. We hand it a plain `requests.Session` without retries,
  so every error reaches our code with its headers and `UserSession` decides:
  a short 429 is waited out (holding back every user of the process: Spotify limits the
  app), a long one or QUOTA_EXCEEDED raises `RateLimited` with the time to try again,
  `invalid_grant` raises `NeedsReauth`, 5xx and network errors are retried with backoff
  and then raise `SpotifyUnavailable`.
- spotipy's DEBUG log prints request headers and token bodies; we keep its logger at
  INFO so tokens never reach a log.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import urlencode
from dataclasses import dataclass, field

import requests
import spotipy
from spotipy.cache_handler import MemoryCacheHandler
from spotipy.exceptions import SpotifyException, SpotifyOauthError
from spotipy.oauth2 import SpotifyClientCredentials, SpotifyOAuth

from weekly_wrapped import contracts
from weekly_wrapped.spotify import payloads

REAL_API_BASE = "https://api.spotify.com/v1/"
REAL_ACCOUNTS_BASE = "https://accounts.spotify.com"
SCOPE = "user-read-recently-played"
REQUEST_TIMEOUT_S = 10

# Token-bearing DEBUG lines live in these loggers.
for _name in ("spotipy", "spotipy.client", "spotipy.oauth2"):
    logging.getLogger(_name).setLevel(logging.INFO)


@dataclass(frozen=True)
class SpotifyApp:
    """The registered Spotify app, and where its endpoints are (None: the real Spotify)."""

    client_id: str
    client_secret: str = field(repr=False)  # never in a log line
    api_base: str | None = None
    accounts_base: str | None = None
    # The onboarding page's callback, registered with the app (only the consent flow needs it).
    redirect_uri: str | None = None

    @property
    def api(self) -> str:
        base = self.api_base or REAL_API_BASE
        return base if base.endswith("/") else base + "/"

    @property
    def accounts(self) -> str:
        return (self.accounts_base or REAL_ACCOUNTS_BASE).rstrip("/")


def _session() -> requests.Session:
    # A bare session: no urllib3 Retry, so no sleeping on Retry-After behind our back.
    return requests.Session()


def _redirect_uri(app: SpotifyApp) -> str:
    # Refreshing a token never uses the redirect URI, but spotipy insists on having one.
    return app.redirect_uri or "http://127.0.0.1/unused"


def make_oauth(app: SpotifyApp, token_info: dict | None = None, state: str | None = None) -> SpotifyOAuth:
    """A SpotifyOAuth for the Authorization Code flow, its token kept in memory only."""
    oauth = SpotifyOAuth(
        client_id=app.client_id,
        client_secret=app.client_secret,
        redirect_uri=_redirect_uri(app),
        state=state,
        scope=SCOPE,
        open_browser=False,
        requests_session=_session(),
        requests_timeout=REQUEST_TIMEOUT_S,
        cache_handler=MemoryCacheHandler(token_info),
    )
    oauth.OAUTH_AUTHORIZE_URL = f"{app.accounts}/authorize"
    oauth.OAUTH_TOKEN_URL = f"{app.accounts}/api/token"
    return oauth


def pkce_pair() -> tuple[str, str]:
    """A PKCE (RFC 7636) code_verifier and its S256 code_challenge."""
    verifier = secrets.token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-]: within 43..128
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def authorize_url(app: SpotifyApp, *, state: str, code_challenge: str) -> str:
    """Spotify's consent page for the Authorization Code flow with PKCE (S256)."""
    query = {"client_id": app.client_id, "response_type": "code", "redirect_uri": _redirect_uri(app),
             "scope": SCOPE, "state": state, "code_challenge_method": "S256", "code_challenge": code_challenge}
    return f"{app.accounts}/authorize?{urlencode(query)}"


def request_tokens(app: SpotifyApp, code: str, code_verifier: str | None = None) -> dict:
    """Trade an authorization code (and its PKCE verifier) for tokens at Spotify's token endpoint.

    Done here rather than by spotipy: `SpotifyOAuth` sends no `code_verifier`, and without a
    code it falls into an interactive prompt. Raises SpotifyOauthError when Spotify refuses,
    requests' errors when it cannot be reached.
    """
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": _redirect_uri(app)}
    if code_verifier:
        form["code_verifier"] = code_verifier
    response = _session().post(f"{app.accounts}/api/token", data=form, auth=(app.client_id, app.client_secret),
                               timeout=REQUEST_TIMEOUT_S)
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or "access_token" not in body:
        raise SpotifyOauthError(f"token endpoint answered {response.status_code}",
                                error=body.get("error") or f"http_{response.status_code}",
                                error_description=body.get("error_description"))
    return body


def client_for_access_token(app: SpotifyApp, access_token: str) -> spotipy.Spotify:
    """A spotipy client on one access token (no auth manager, so never a prompt or a refresh)."""
    sp = spotipy.Spotify(auth=access_token, requests_session=_session(), requests_timeout=REQUEST_TIMEOUT_S,
                         retries=0, status_retries=0, backoff_factor=0)
    sp.prefix = app.api
    return sp


def oauth_for_refresh_token(app: SpotifyApp, refresh_token: str) -> SpotifyOAuth:
    """An OAuth manager holding only a refresh token: the first call refreshes the access token."""
    stale = {"access_token": "", "token_type": "Bearer", "expires_in": 0, "expires_at": 0,
             "refresh_token": refresh_token, "scope": SCOPE}
    return make_oauth(app, stale)


def make_app_auth(app: SpotifyApp) -> SpotifyClientCredentials:
    """The app's own token (Client Credentials flow): catalogue calls only, no user behind it."""
    auth = SpotifyClientCredentials(
        client_id=app.client_id,
        client_secret=app.client_secret,
        requests_session=_session(),
        requests_timeout=REQUEST_TIMEOUT_S,
        cache_handler=MemoryCacheHandler(),
    )
    auth.OAUTH_TOKEN_URL = f"{app.accounts}/api/token"
    return auth


def make_client(app: SpotifyApp, oauth: SpotifyOAuth | SpotifyClientCredentials) -> spotipy.Spotify:
    """A spotipy client on `app.api`, with spotipy's own retries off (we retry ourselves)."""
    sp = spotipy.Spotify(
        auth_manager=oauth,
        requests_session=_session(),
        requests_timeout=REQUEST_TIMEOUT_S,
        retries=0,
        status_retries=0,
        backoff_factor=0,
    )
    sp.prefix = app.api
    return sp


def force_refresh(oauth: SpotifyOAuth) -> dict:
    """Refresh the access token now (after a 401 on a token spotipy still thought valid)."""
    info = oauth.cache_handler.get_cached_token() or {}
    return oauth.refresh_access_token(info["refresh_token"])


def current_refresh_token(oauth: SpotifyOAuth) -> str | None:
    """The refresh token the manager holds now (Spotify may rotate it on refresh)."""
    info = oauth.cache_handler.get_cached_token() or {}
    return info.get("refresh_token")


@dataclass(frozen=True)
class CallPolicy:
    """How `UserSession` treats errors."""

    short_retry_after_s: int = 30  # a longer Retry-After gives up on the user for this run
    quota_retry_s: int = 3600  # QUOTA_EXCEEDED without Retry-After: try again in an hour
    max_attempts: int = 4  # per request, for 5xx / timeouts / short 429s
    backoff_s: float = 1.0  # 1, 2, 4 s ... between 5xx attempts
    max_pages: int = 20


class RateLimited(Exception):
    def __init__(self, reason: str, retry_at: datetime):
        super().__init__(reason)
        self.retry_at = retry_at


class NeedsReauth(Exception):
    pass


class SpotifyUnavailable(Exception):
    pass


class RateLimiter:
    """A token bucket shared by all threads; `pause(s)` holds everyone back (Spotify limits per app)."""

    def __init__(self, per_second: float, burst: int | None = None):
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.capacity = burst or max(1, int(per_second))
        self.tokens = float(self.capacity)
        self.updated = time.monotonic()
        self.paused_until = 0.0
        self.lock = threading.Lock()

    def acquire(self) -> None:
        if not self.interval:
            return
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) / self.interval)
                self.updated = now
                wait = max(self.paused_until - now, 0.0)
                if not wait and self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = wait or (1 - self.tokens) * self.interval
            time.sleep(wait)

    def pause(self, seconds: float) -> None:
        with self.lock:
            self.paused_until = max(self.paused_until, time.monotonic() + seconds)


class UserSession:
    """One user's spotipy client, with our error policy around every call."""

    def __init__(self, app: SpotifyApp, policy: CallPolicy, refresh_token: str, limiter: RateLimiter,
                 sleep: Callable[[float], None] = time.sleep):
        self.policy = policy
        self.oauth = oauth_for_refresh_token(app, refresh_token)
        self.sp = make_client(app, self.oauth)
        self.limiter = limiter
        self.sleep = sleep
        self.refreshed_after_401 = False

    def renew_token(self) -> None:
        force_refresh(self.oauth)

    def call(self, fn: Callable[[spotipy.Spotify], Any]) -> Any:
        attempt = 0
        while True:
            attempt += 1
            self.limiter.acquire()
            try:
                return fn(self.sp)
            except SpotifyOauthError as exc:
                if exc.error == "invalid_grant":
                    raise NeedsReauth(f"refresh token rejected: {exc.error_description or exc.error}") from None
                if exc.error == "invalid_client":
                    raise  # our app's credentials are wrong: a configuration error, not transient
                problem = f"token endpoint error {exc.error}"
            except SpotifyException as exc:
                if exc.http_status == 401 and not self.refreshed_after_401:
                    # The access token expired (or was revoked) before spotipy's clock says so.
                    self.refreshed_after_401 = True
                    self.limiter.acquire()
                    try:
                        self.renew_token()
                    except SpotifyOauthError as oauth_exc:
                        if oauth_exc.error == "invalid_grant":
                            raise NeedsReauth(f"refresh token rejected: {oauth_exc.error_description}") from None
                        raise
                    continue
                if exc.http_status == 429:
                    header = payloads.retry_after_seconds(exc.headers, default=-1)
                    if exc.reason == "QUOTA_EXCEEDED":
                        retry = header if header >= 0 else self.policy.quota_retry_s
                        raise RateLimited("QUOTA_EXCEEDED", _utcnow() + timedelta(seconds=max(retry, 1))) from None
                    wait = max(header, 1)  # none or 0: a second
                    if wait > self.policy.short_retry_after_s or attempt >= self.policy.max_attempts:
                        raise RateLimited(f"429 Retry-After {wait}s", _utcnow() + timedelta(seconds=wait)) from None
                    # Spotify's limit is per app: hold back every user of this process, then retry.
                    self.limiter.pause(wait)
                    continue
                if exc.http_status >= 500:
                    problem = f"Spotify {exc.http_status}"
                else:
                    raise
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"network error {type(exc).__name__}"
            if attempt >= self.policy.max_attempts:
                raise SpotifyUnavailable(f"{problem} after {attempt} attempts")
            self.sleep(self.policy.backoff_s * 2 ** (attempt - 1))

    def recently_played(self, after_ms: int | None) -> list[dict]:
        """Every item after the cursor, following `next` while it moves forward."""
        if after_ms is None:
            page = self.call(lambda sp: sp.current_user_recently_played(limit=payloads.HISTORY_WINDOW))
        else:
            page = self.call(lambda sp: sp.current_user_recently_played(limit=payloads.HISTORY_WINDOW,
                                                                       after=after_ms))
        items = list(page.get("items") or [])
        last_after = after_ms
        for _ in range(self.policy.max_pages):
            nxt = page.get("next")
            if not nxt:
                break
            fwd = payloads.cursor_from_url(nxt, "after")
            back = payloads.cursor_from_url(nxt, "before")
            if fwd is not None:
                if last_after is not None and fwd <= last_after:
                    break  # not moving forward
                last_after = fwd
            elif back is None or (after_ms is not None and back <= after_ms):
                break  # paging back past the cursor: nothing new there
            current = page
            page = self.call(lambda sp: sp.next(current))
            if not page or not page.get("items"):
                break
            items.extend(page["items"])
        return items

    def entity(self, topic: str, entity_id: str) -> dict | None:
        kind = {contracts.TRACKS_TOPIC: "track", contracts.ALBUMS_TOPIC: "album",
                contracts.ARTISTS_TOPIC: "artist"}[topic]
        try:
            return self.call(lambda sp: getattr(sp, kind)(entity_id))
        except SpotifyException as exc:
            if exc.http_status == 404:
                return None  # gone from Spotify: keep what the payload had
            raise

    def search_track(self, artist: str, track: str, limit: int = 10) -> list[dict]:
        """Candidate full track objects for an (artist, track) name pair, Spotify's best first.

        `GET /search?type=track` with field filters; 10 is the most a development-mode app may
        ask for (2026). Double quotes inside names would end a filter early, so they become spaces.
        """
        def quoted(name: str) -> str:
            return '"' + " ".join(name.replace('"', " ").split()) + '"'

        q = f"track:{quoted(track)} artist:{quoted(artist)}"
        page = self.call(lambda sp: sp.search(q, limit=limit, type="track"))
        return [item for item in ((page or {}).get("tracks") or {}).get("items") or [] if item and item.get("id")]

    def search_artist(self, name: str, limit: int = 5) -> list[dict]:
        """Spotify's artist objects for a name, best first: `GET /search?type=artist` with an
        `artist:` filter (at most 10 for a development-mode app, 2026)."""
        q = 'artist:"' + " ".join(name.replace('"', " ").split()) + '"'
        page = self.call(lambda sp: sp.search(q, limit=limit, type="artist"))
        return [item for item in ((page or {}).get("artists") or {}).get("items") or [] if item and item.get("id")]


class AppSession(UserSession):
    """The app's own session (Client Credentials), for catalogue look-ups no user is needed for.

    The recap's artist suggestions are searched with it: no user's refresh token is used (so
    the recap never rotates a token the ingest may be using), one token serves a whole run,
    and the same error policy and rate limiter as polling apply.
    """

    def __init__(self, app: SpotifyApp, policy: CallPolicy, limiter: RateLimiter,
                 sleep: Callable[[float], None] = time.sleep):
        self.policy = policy
        self.oauth = make_app_auth(app)
        self.sp = make_client(app, self.oauth)
        self.limiter = limiter
        self.sleep = sleep
        self.refreshed_after_401 = False

    def renew_token(self) -> None:
        self.oauth.get_access_token(as_dict=False, check_cache=False)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)
