"""spotipy, configured for Weekly Wrapped: real Spotify or the local fake, and no hidden sleeps.

- The API and Accounts base URLs are configurable (the fake Spotify in the demo and
  tests): `sp.prefix` is set after construction and the token/authorize URLs are
  overridden on the `SpotifyOAuth` instance (spotipy has no constructor argument).
- spotipy normally mounts a urllib3 `Retry` that honours `Retry-After` by sleeping,
  which can be hours on a 429. We hand it a plain `requests.Session` without retries,
  so every error reaches our code with its headers and we decide (see `ingest.py`).
- spotipy's DEBUG log prints request headers and token bodies; we keep its logger at
  INFO so tokens never reach a log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import requests
import spotipy
from spotipy.cache_handler import MemoryCacheHandler
from spotipy.oauth2 import SpotifyOAuth

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


def make_oauth(app: SpotifyApp, token_info: dict | None = None, state: str | None = None) -> SpotifyOAuth:
    """A SpotifyOAuth for the Authorization Code flow, its token kept in memory only."""
    oauth = SpotifyOAuth(
        client_id=app.client_id,
        client_secret=app.client_secret,
        # Refreshing a token never uses the redirect URI, but spotipy insists on having one.
        redirect_uri=app.redirect_uri or "http://127.0.0.1/unused",
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


def oauth_for_refresh_token(app: SpotifyApp, refresh_token: str) -> SpotifyOAuth:
    """An OAuth manager holding only a refresh token: the first call refreshes the access token."""
    stale = {"access_token": "", "token_type": "Bearer", "expires_in": 0, "expires_at": 0,
             "refresh_token": refresh_token, "scope": SCOPE}
    return make_oauth(app, stale)


def make_client(app: SpotifyApp, oauth: SpotifyOAuth) -> spotipy.Spotify:
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
