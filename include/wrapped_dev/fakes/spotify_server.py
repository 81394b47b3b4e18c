"""A fake Spotify Web API + Accounts service that the real spotipy client talks to.

It follows Spotify's 2026 protocol for development-mode apps closely enough that
ingestion bugs show up against it:

- Accounts: `GET /authorize` (Authorization Code flow; redirects back with `code`
  and `state`; PKCE: a `code_challenge` (S256 only) makes the token request need the
  matching `code_verifier`), `POST /api/token` with `authorization_code` and `refresh_token`
  grants, client auth by HTTP Basic or form fields, `invalid_grant` for unknown,
  used or revoked codes/refresh tokens.
- Web API under `/v1`: `/me`, `/me/player/recently-played` (cursors `after` /
  `before` in epoch ms, `limit` 1..50, newest first, `played_at` = END of the play
  as ISO 8601 with ms and 'Z', `next` and `cursors`, only the last 50 plays exist),
  `/tracks/{id}`, `/albums/{id}`, `/artists/{id}` in the 2026 shapes (no
  popularity, followers, genres, available_markets, external_ids),
  `/search?q=...&type=track` or `type=artist` (`limit` 1..10 for development-mode apps,
  default 5; field filters `track:"..."`, `artist:"..."`, `album:"..."` and free words,
  matched loosely and case-insensitively against the catalogue; exact names rank first;
  artists come back as full artist objects). Access tokens live an hour; an expired or
  unknown one gets 401. A Client Credentials token (`grant_type=client_credentials`, the
  app's own) may call the catalogue and search, and gets 401 on `/me...`.
- Control endpoints (not Spotify's) under `/_control/`, for tests and the demo:
  `GET  /_control/users`   demo users (id, display name, e-mail, time zone)
  `GET  /_control/state`   clock, request counts per route and user, pending faults
  `POST /_control/clock`   {"now": ISO or epoch ms} freezes the clock there,
                           {"advance_seconds": N} moves a frozen clock, {"real": true} unfreezes
  `POST /_control/fault`   {"kind": "429"|"quota"|"5xx"|"invalid_grant"|"expire_token",
                            "user_id": optional, "path": optional path prefix,
                            "retry_after": seconds (429), "status": code (5xx), "count": n}
  `POST /_control/burst`   {"user_id": u, "count": n} n extra plays ending at the clock's now
  `POST /_control/reset`   forget faults, bursts, counters and the frozen clock
  `POST /_control/listeners` {"count": N} serve N synthetic listeners (the demo's three, then
                           `demo-user-004` ...; only ever grows), to onboard many at once
  `POST /_control/rate_limit` {"per_second": R, "window_seconds": W (default 30)} an app-wide
                           limit on Web API requests, or {"per_second": null} for none (the default)

The app-wide rate limit works like Spotify's: a rolling window (30 s) over all of the app's Web API
requests, whichever user's token they carry; a request over the budget (R x W requests in the last
W seconds) gets 429 with `Retry-After` (whole seconds until the window has room) and does not count
against the budget. The accounts service (`/api/token`) is not limited. `/_control/state` counts
`api requests` (every Web API request, admitted or not) and `api 429 rate limit`.

The plays come from `demo_listener`, deterministic from `--seed` and the listener. The clock is
real time unless frozen by `FAKE_SPOTIFY_NOW` (ISO 8601 or epoch ms) or the control endpoint.
Run: `python -m wrapped_dev.fakes.spotify_server --port 8901 [--seed N] [--users N] [--rate-limit R]`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import threading
import time
import unicodedata
from collections import deque
from dataclasses import replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

from wrapped_dev.fakes import demo_listener as dl
from wrapped_dev.fakes import serve_until_interrupted

ACCESS_TOKEN_SECONDS = 3600
MAX_LIMIT = 50
HISTORY_SIZE = 50  # Spotify keeps only the last 50 plays reachable through the API
DEFAULT_SCOPE = "user-read-recently-played"
SEARCH_MAX_LIMIT = 10  # 2026, development-mode apps: at most 10 items per type
SEARCH_DEFAULT_LIMIT = 5
SEARCH_TYPES = ("album", "artist", "playlist", "track", "show", "episode", "audiobook")


def pkce_challenge(verifier: str) -> str:
    """The S256 code_challenge of a PKCE code_verifier (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii", errors="replace")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def parse_instant(value) -> int:
    """Epoch ms from an int/str of ms or an ISO 8601 string (with 'Z' or an offset)."""
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


class FakeSpotify:
    """All server state, behind one lock. Pure in-memory; restart = fresh state."""

    def __init__(self, seed: int = 7, n_users: int = 3, client_id: str = "demo-client-id",
                 client_secret: str = "demo-client-secret", now: int | None = None, user_prefix: str = "",
                 rate_limit: float | None = None, rate_window_s: float = 30.0):
        self.seed = seed
        self.user_prefix = user_prefix
        self.client_id = client_id
        self.client_secret = client_secret
        self.catalogue = dl.build_catalogue(seed)
        # A prefix gives tests their own user ids next to the demo's in one warehouse.
        self.users: dict[str, dl.DemoUser] = {}
        self.lock = threading.Lock()
        self.add_listeners(n_users)
        self.frozen_now_ms = now
        self.codes: dict[str, dict] = {}           # code -> {user_id, redirect_uri, scope}
        self.refresh_tokens: dict[str, dict] = {}  # token -> {user_id, scope, revoked}
        self.access_tokens: dict[str, dict] = {}   # token -> {user_id, expires_at (real time)}
        self.faults: list[dict] = []
        self.bursts: dict[str, list[dl.Play]] = {}
        self.counts: dict[str, int] = {}
        self.rate_limit = rate_limit  # Web API requests per second for the whole app; None: no limit
        self.rate_window_s = rate_window_s
        self.admitted: deque[float] = deque()  # monotonic times of the requests in the current window

    def add_listeners(self, count: int) -> int:
        """Serve the first `count` synthetic listeners (never fewer than now); returns how many there are."""
        with self.lock:
            for u in dl.demo_users(count)[len(self.users):]:
                uid = self.user_prefix + u.user_id
                self.users[uid] = replace(u, user_id=uid, email=self.user_prefix + u.email)
            return len(self.users)

    # --- the app-wide rate limit --------------------------------------------------
    def set_rate_limit(self, per_second: float | None, window_s: float = 30.0) -> None:
        with self.lock:
            self.rate_limit = per_second or None
            self.rate_window_s = window_s
            self.admitted.clear()

    def admit(self) -> int:
        """Count one Web API request: 0 if it fits the app's budget, else the Retry-After in seconds."""
        with self.lock:
            self.counts["api requests"] = self.counts.get("api requests", 0) + 1
            if not self.rate_limit:
                return 0
            now = time.monotonic()
            while self.admitted and self.admitted[0] <= now - self.rate_window_s:
                self.admitted.popleft()
            if len(self.admitted) < max(1, int(self.rate_limit * self.rate_window_s)):
                self.admitted.append(now)
                return 0
            self.counts["api 429 rate limit"] = self.counts.get("api 429 rate limit", 0) + 1
            return max(1, int(self.admitted[0] + self.rate_window_s - now + 0.999))

    # --- clock -----------------------------------------------------------------
    def now_ms(self) -> int:
        return self.frozen_now_ms if self.frozen_now_ms is not None else int(time.time() * 1000)

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.bursts.clear()
            self.counts.clear()
            self.admitted.clear()
            self.frozen_now_ms = None

    # --- faults ----------------------------------------------------------------
    def take_fault(self, user_id: str | None, path: str, kinds: tuple[str, ...]) -> dict | None:
        """The first pending fault matching this request, consumed once (count times in all)."""
        with self.lock:
            for fault in self.faults:
                if fault["kind"] not in kinds:
                    continue
                if fault.get("user_id") and fault["user_id"] != user_id:
                    continue
                if fault.get("path") and not path.startswith(fault["path"]):
                    continue
                fault["count"] -= 1
                if fault["count"] <= 0:
                    self.faults.remove(fault)
                return dict(fault)
        return None

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    # --- plays -----------------------------------------------------------------
    def history(self, user_id: str, now_ms: int) -> list[dl.Play]:
        """The last 50 plays finished by `now_ms`, newest first (synthetic + injected bursts)."""
        user = self.users[user_id]
        plays = dl.latest_plays(self.seed, user, now_ms, HISTORY_SIZE)
        with self.lock:
            plays += [p for p in self.bursts.get(user_id, []) if p.played_at_ms <= now_ms]
        plays.sort(key=lambda p: p.played_at_ms, reverse=True)
        return plays[:HISTORY_SIZE]

    def add_burst(self, user_id: str, count: int) -> list[dl.Play]:
        """`count` short plays back to back ending at now: more than a poll window can hold."""
        now = self.now_ms()
        singles = [a for a in self.catalogue.albums.values() if a.album_type == "single"]
        burst = []
        for i in range(count):
            album = singles[(i * 7) % len(singles)]
            # 31 s apart: each one just long enough to count as a play.
            burst.append(dl.Play(user_id, album.track_ids[0], now - i * 31_000 - 5,
                                 31_000, f"spotify:album:{album.id}"))
        with self.lock:
            self.bursts.setdefault(user_id, []).extend(burst)
        return burst


# --- JSON shapes (2026 development-mode) -----------------------------------------

def _ext(kind: str, ident: str) -> dict:
    return {"spotify": f"https://open.spotify.com/{kind}/{ident}"}


def _images(url: str) -> list[dict]:
    return [{"url": url, "height": 640, "width": 640},
            {"url": url.replace("b273", "1e02"), "height": 300, "width": 300},
            {"url": url.replace("b273", "4851"), "height": 64, "width": 64}]


def simple_artist(api: str, cat: dl.Catalogue, artist_id: str) -> dict:
    a = cat.artists[artist_id]
    return {"external_urls": _ext("artist", a.id), "href": f"{api}artists/{a.id}", "id": a.id,
            "name": a.name, "type": "artist", "uri": f"spotify:artist:{a.id}"}


def full_artist(api: str, cat: dl.Catalogue, artist_id: str) -> dict:
    a = cat.artists[artist_id]
    return {**simple_artist(api, cat, artist_id), "images": _images(a.image_url)}


def simple_album(api: str, cat: dl.Catalogue, album_id: str) -> dict:
    al = cat.albums[album_id]
    return {"album_type": al.album_type, "total_tracks": len(al.track_ids),
            "external_urls": _ext("album", al.id), "href": f"{api}albums/{al.id}", "id": al.id,
            "images": _images(al.image_url), "name": al.name, "release_date": al.release_date,
            "release_date_precision": al.release_date_precision, "type": "album",
            "uri": f"spotify:album:{al.id}",
            "artists": [simple_artist(api, cat, a) for a in al.artist_ids]}


def simple_track(api: str, cat: dl.Catalogue, track_id: str) -> dict:
    t = cat.tracks[track_id]
    return {"artists": [simple_artist(api, cat, a) for a in t.artist_ids], "disc_number": t.disc_number,
            "duration_ms": t.duration_ms, "explicit": t.explicit, "external_urls": _ext("track", t.id),
            "href": f"{api}tracks/{t.id}", "id": t.id, "is_local": False, "is_playable": True,
            "name": t.name, "track_number": t.track_number, "type": "track", "uri": f"spotify:track:{t.id}"}


def full_track(api: str, cat: dl.Catalogue, track_id: str) -> dict:
    t = cat.tracks[track_id]
    return {"album": simple_album(api, cat, t.album_id), **simple_track(api, cat, track_id)}


def full_album(api: str, cat: dl.Catalogue, album_id: str) -> dict:
    al = cat.albums[album_id]
    items = [simple_track(api, cat, t) for t in al.track_ids]
    return {**simple_album(api, cat, album_id),
            "tracks": {"href": f"{api}albums/{al.id}/tracks?offset=0&limit=50", "limit": 50,
                       "next": None, "offset": 0, "previous": None, "total": len(items), "items": items}}


def _context(api: str, uri: str | None) -> dict | None:
    if not uri:
        return None
    _, kind, ident = uri.split(":")
    return {"type": kind, "href": f"{api}{kind}s/{ident}", "external_urls": _ext(kind, ident), "uri": uri}


def recently_played_page(fake: FakeSpotify, api: str, user_id: str, query: dict) -> tuple[int, dict]:
    """The `/me/player/recently-played` response for one request: (status, body)."""
    try:
        limit = int(query.get("limit", "20"))
        after = int(query["after"]) if "after" in query else None
        before = int(query["before"]) if "before" in query else None
    except ValueError:
        return 400, _error(400, "Invalid limit or cursor")
    if not 1 <= limit <= MAX_LIMIT:
        return 400, _error(400, "Invalid limit")
    if after is not None and before is not None:
        return 400, _error(400, "Only one of after and before may be given")
    history = fake.history(user_id, fake.now_ms())  # newest first
    if after is not None:
        # Forward paging: the `limit` oldest plays after the cursor, still listed newest first.
        newer = [p for p in history if p.played_at_ms > after]
        page = newer[-limit:]
        more = len(newer) > limit
    else:
        older = [p for p in history if before is None or p.played_at_ms < before]
        page = older[:limit]
        more = len(older) > limit
    base = f"{api}me/player/recently-played"
    cursors = None
    next_url = None
    if page:
        cursors = {"after": str(page[0].played_at_ms), "before": str(page[-1].played_at_ms)}
        if more:
            key = "after" if after is not None else "before"
            next_url = f"{base}?{urlencode({key: cursors[key], 'limit': limit})}"
    href = f"{base}?{urlencode({k: v for k, v in query.items()})}"
    items = [{"track": full_track(api, fake.catalogue, p.track_id), "played_at": dl.iso_ms(p.played_at_ms),
              "context": _context(api, p.context_uri)} for p in page]
    return 200, {"items": items, "next": next_url, "cursors": cursors, "limit": limit, "href": href}


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip().casefold()


def parse_search_query(q: str) -> tuple[dict[str, str], list[str]]:
    """Field filters (`track:"a b"`, `artist:x`, ...) and the remaining free words, case-folded."""
    filters: dict[str, str] = {}

    def take(m: re.Match) -> str:
        filters[m.group(1).lower()] = _fold(m.group(3) if m.group(3) is not None else m.group(4))
        return " "

    rest = re.sub(r'\b(track|artist|album|year|genre|isrc|upc)\s*:\s*("([^"]*)"|(\S+))', take, q,
                  flags=re.IGNORECASE)
    return filters, [w for w in _fold(rest.replace('"', " ")).split() if w]


def _has_words(wanted: str | None, fields: list[str]) -> bool:
    """Every word of a field filter in one of the fields (loose, like Spotify's own matching)."""
    if wanted is None:
        return True
    words = wanted.replace('"', " ").split()
    return any(all(w in f for w in words) for f in fields)


def search_tracks(cat: dl.Catalogue, q: str) -> list[str]:
    """Track ids matching the query, loosely (substrings), exact track and artist names first."""
    filters, words = parse_search_query(q)
    ranked = []
    for t in cat.tracks.values():
        name = _fold(t.name)
        artists = [_fold(cat.artists[a].name) for a in t.artist_ids]
        album = _fold(cat.albums[t.album_id].name)
        if not _has_words(filters.get("track"), [name]) or not _has_words(filters.get("album"), [album]):
            continue
        if not _has_words(filters.get("artist"), artists):
            continue
        text = " ".join([name, album, *artists])
        if not all(w in text for w in words):
            continue
        exact = (filters.get("track") == name) + (filters.get("artist") in artists)
        ranked.append((-exact, t.id))
    return [tid for _, tid in sorted(ranked)]


def search_artists(cat: dl.Catalogue, q: str) -> list[str]:
    """Artist ids matching the query (an `artist:` filter and/or free words), exact names first."""
    filters, words = parse_search_query(q)
    ranked = []
    for a in cat.artists.values():
        name = _fold(a.name)
        if not _has_words(filters.get("artist"), [name]) or not all(w in name for w in words):
            continue
        exact = filters.get("artist") == name or " ".join(words) == name
        ranked.append((not exact, name, a.id))
    return [aid for _, _, aid in sorted(ranked)]


def search_page(fake: FakeSpotify, api: str, query: dict) -> tuple[int, dict]:
    """The `/search` response: (status, body); tracks and artists are in the catalogue, other types come back empty."""
    q = query.get("q", "")
    if not q.strip():
        return 400, _error(400, "No search query")
    types = [t.strip() for t in query.get("type", "").split(",") if t.strip()]
    if not types:
        return 400, _error(400, "Missing parameter type")
    if any(t not in SEARCH_TYPES for t in types):
        return 400, _error(400, "Bad search type field")
    try:
        limit = int(query.get("limit", SEARCH_DEFAULT_LIMIT))
        offset = int(query.get("offset", 0))
    except ValueError:
        return 400, _error(400, "Invalid limit or offset")
    if not 0 <= limit <= SEARCH_MAX_LIMIT:
        return 400, _error(400, "Invalid limit")
    if not 0 <= offset <= 1000:
        return 400, _error(400, "Invalid offset")
    base = f"{api}search"

    def page_url(at: int) -> str:
        return f"{base}?{urlencode({'q': q, 'type': query['type'], 'offset': at, 'limit': limit})}"

    body = {}
    for kind in types:
        search, shape = {"track": (search_tracks, full_track), "artist": (search_artists, full_artist)}.get(
            kind, (lambda cat, q: [], None))
        found = search(fake.catalogue, q)
        chosen = found[offset:offset + limit]
        items = [shape(api, fake.catalogue, ident) for ident in chosen]
        body[kind + "s"] = {
            "href": page_url(offset), "limit": limit, "offset": offset, "total": len(found), "items": items,
            "next": page_url(offset + limit) if offset + limit < len(found) else None,
            "previous": page_url(max(offset - limit, 0)) if offset > 0 else None}
    return 200, body


def _error(status: int, message: str, reason: str | None = None) -> dict:
    err = {"status": status, "message": message}
    if reason:
        err["reason"] = reason
    return {"error": err}


class Handler(BaseHTTPRequestHandler):
    server_version = "FakeSpotify/1.0"
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle's algorithm on, the body waits for the
    # client's delayed ACK of the headers: 40 ms a response on a kept-alive connection.
    disable_nagle_algorithm = True
    fake: FakeSpotify  # set on the subclass made by make_server

    def log_message(self, fmt, *args):  # quiet: tests start many of these
        if os.environ.get("FAKE_SPOTIFY_LOG"):
            super().log_message(fmt, *args)

    # --- plumbing ---------------------------------------------------------------
    def _send(self, status: int, body: dict | str | None, headers: dict | None = None) -> None:
        data = b""
        ctype = "application/json; charset=utf-8"
        if isinstance(body, str):
            data, ctype = body.encode(), "text/html; charset=utf-8"
        elif body is not None:
            data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _api_base(self) -> str:
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        return f"http://{host}/v1/"

    # --- dispatch -----------------------------------------------------------------
    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/authorize":
            return self._authorize(query)
        if url.path == "/_control/users":
            return self._send(200, {"users": [
                {"user_id": u.user_id, "display_name": u.display_name, "email": u.email,
                 "time_zone": u.time_zone} for u in self.fake.users.values()]})
        if url.path == "/_control/state":
            with self.fake.lock:
                state = {"now": dl.iso_ms(self.fake.now_ms()), "now_ms": self.fake.now_ms(),
                         "frozen": self.fake.frozen_now_ms is not None, "counts": dict(self.fake.counts),
                         "faults": [dict(f) for f in self.fake.faults], "listeners": len(self.fake.users),
                         "rate_limit": {"per_second": self.fake.rate_limit,
                                        "window_seconds": self.fake.rate_window_s}}
            return self._send(200, state)
        if url.path.startswith("/v1/"):
            # Spotify tolerates a trailing slash (spotipy sends "me/").
            return self._api(url.path[len("/v1/"):].rstrip("/"), query)
        self._send(404, _error(404, "Service not found"))

    def do_POST(self):
        url = urlparse(self.path)
        if url.path == "/api/token":
            return self._token()
        if url.path.startswith("/_control/"):
            try:
                payload = json.loads(self._body() or b"{}")
            except ValueError:
                return self._send(400, {"error": "body must be JSON"})
            return self._control(url.path[len("/_control/"):], payload)
        self._send(404, _error(404, "Service not found"))

    # --- accounts -------------------------------------------------------------------
    def _authorize(self, q: dict) -> None:
        if q.get("client_id") != self.fake.client_id:
            return self._send(400, "<h1>INVALID_CLIENT: Invalid client</h1>")
        if q.get("response_type") != "code" or not q.get("redirect_uri"):
            return self._send(400, "<h1>Illegal redirect_uri or response_type</h1>")
        user_id = q.get("fake_user")  # the fake's stand-in for logging in and clicking "Agree"
        if not user_id:
            links = "".join(
                f'<li><a href="{self.path}&fake_user={u}">{self.fake.users[u].display_name} ({u})</a></li>'
                for u in self.fake.users)
            return self._send(200, f"<h1>Fake Spotify: log in as</h1><ul>{links}</ul>")
        sep = "&" if "?" in q["redirect_uri"] else "?"
        if user_id not in self.fake.users or q.get("deny"):
            back = {"error": "access_denied", **({"state": q["state"]} if "state" in q else {})}
            return self._send(302, None, {"Location": f"{q['redirect_uri']}{sep}{urlencode(back)}"})
        challenge = q.get("code_challenge")
        if challenge and q.get("code_challenge_method") != "S256":
            return self._send(400, "<h1>code_challenge_method must be S256</h1>")
        code = secrets.token_urlsafe(24)
        with self.fake.lock:
            self.fake.codes[code] = {"user_id": user_id, "redirect_uri": q["redirect_uri"],
                                     "scope": q.get("scope", DEFAULT_SCOPE), "code_challenge": challenge}
        back = {"code": code, **({"state": q["state"]} if "state" in q else {})}
        self._send(302, None, {"Location": f"{q['redirect_uri']}{sep}{urlencode(back)}"})

    def _client_ok(self, form: dict) -> bool:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
        else:
            cid, secret = form.get("client_id"), form.get("client_secret")
        return cid == self.fake.client_id and secret == self.fake.client_secret

    def _issue_access(self, user_id: str | None, scope: str) -> dict:
        token = "fake-at-" + secrets.token_urlsafe(32)
        with self.fake.lock:
            self.fake.access_tokens[token] = {"user_id": user_id, "expires_at": time.time() + ACCESS_TOKEN_SECONDS}
        body = {"access_token": token, "token_type": "Bearer", "expires_in": ACCESS_TOKEN_SECONDS}
        return {**body, "scope": scope} if user_id is not None else body

    def _token(self) -> None:
        form = {k: v[-1] for k, v in parse_qs(self._body().decode()).items()}
        self.fake.count("POST /api/token")
        if not self._client_ok(form):
            return self._send(400, {"error": "invalid_client", "error_description": "Invalid client"})
        grant = form.get("grant_type")
        if grant == "authorization_code":
            with self.fake.lock:
                info = self.fake.codes.pop(form.get("code", ""), None)  # a code is good once
            if info is None:
                return self._send(400, {"error": "invalid_grant", "error_description": "Invalid authorization code"})
            if info["redirect_uri"] != form.get("redirect_uri"):
                return self._send(400, {"error": "invalid_grant", "error_description": "Invalid redirect URI"})
            if info["code_challenge"]:
                # PKCE: a code issued for a challenge needs the verifier behind it (RFC 7636 4.6).
                verifier = form.get("code_verifier")
                if not verifier:
                    return self._send(400, {"error": "invalid_request", "error_description": "code_verifier required"})
                if pkce_challenge(verifier) != info["code_challenge"]:
                    return self._send(400, {"error": "invalid_grant", "error_description": "code_verifier was incorrect"})
            refresh = "fake-rt-" + secrets.token_urlsafe(32)
            with self.fake.lock:
                self.fake.refresh_tokens[refresh] = {"user_id": info["user_id"], "scope": info["scope"],
                                                     "revoked": False}
            return self._send(200, {**self._issue_access(info["user_id"], info["scope"]),
                                    "refresh_token": refresh})
        if grant == "refresh_token":
            with self.fake.lock:
                info = self.fake.refresh_tokens.get(form.get("refresh_token", ""))
            user_id = info["user_id"] if info else None
            if info and self.fake.take_fault(user_id, "/api/token", ("invalid_grant",)):
                with self.fake.lock:
                    info["revoked"] = True  # the user removed the app: permanent until they reconnect
            if info is None or info["revoked"]:
                return self._send(400, {"error": "invalid_grant", "error_description": "Refresh token revoked"})
            # Like Spotify usually does, the refresh response carries no new refresh_token.
            return self._send(200, self._issue_access(info["user_id"], info["scope"]))
        if grant == "client_credentials":
            # The app's own token: no user, no refresh token.
            return self._send(200, self._issue_access(None, ""))
        self._send(400, {"error": "unsupported_grant_type",
                         "error_description": "grant_type must be authorization_code, refresh_token "
                                              "or client_credentials"})

    # --- Web API ----------------------------------------------------------------------
    def _api(self, route: str, query: dict) -> None:
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with self.fake.lock:
            info = self.fake.access_tokens.get(token)
        # Spotify counts every request of the app, whichever token (or none) it carries.
        retry_after = self.fake.admit()
        if retry_after:
            return self._send(429, _error(429, "API rate limit exceeded"), {"Retry-After": retry_after})
        if info is None:
            return self._send(401, _error(401, "Invalid access token"))
        user_id = info["user_id"]
        path = "/v1/" + route
        if self.fake.take_fault(user_id, path, ("expire_token",)):
            with self.fake.lock:
                info["expires_at"] = 0
        if info["expires_at"] < time.time():
            return self._send(401, _error(401, "The access token expired"))
        fault = self.fake.take_fault(user_id, path, ("429", "quota", "5xx"))
        kind = re.sub(r"/[0-9A-Za-z]{22}$", "/{id}", route)
        self.fake.count(f"GET /v1/{kind}")
        self.fake.count(f"GET /v1/{kind} {user_id or 'app'}")
        if fault:
            if fault["kind"] == "429":
                return self._send(429, _error(429, "API rate limit exceeded"),
                                  {"Retry-After": int(fault.get("retry_after", 1))})
            if fault["kind"] == "quota":
                headers = {"Retry-After": int(fault["retry_after"])} if fault.get("retry_after") else {}
                return self._send(429, _error(429, "Quota exceeded for this app", "QUOTA_EXCEEDED"), headers)
            status = int(fault.get("status", 503))
            return self._send(status, _error(status, "Service unavailable" if status == 503 else "Server error"))
        api = self._api_base()
        cat = self.fake.catalogue
        if user_id is None and (route == "me" or route.startswith("me/")):
            return self._send(401, _error(401, "This request requires user authentication."))
        if route == "me":
            u = self.fake.users[user_id]
            # 2026: no email, country, product or followers for development-mode apps.
            return self._send(200, {"display_name": u.display_name, "external_urls": _ext("user", u.user_id),
                                    "href": f"{api}users/{u.user_id}", "id": u.user_id, "images": [],
                                    "type": "user", "uri": f"spotify:user:{u.user_id}"})
        if route == "me/player/recently-played":
            status, body = recently_played_page(self.fake, api, user_id, query)
            return self._send(status, body)
        if route == "search":
            status, body = search_page(self.fake, api, query)
            return self._send(status, body)
        m = re.fullmatch(r"(tracks|albums|artists)/([^/]+)", route)
        if m:
            kind, ident = m.groups()
            table = {"tracks": cat.tracks, "albums": cat.albums, "artists": cat.artists}[kind]
            if not re.fullmatch(r"[0-9A-Za-z]{22}", ident):
                return self._send(400, _error(400, "Invalid base62 id"))
            if ident not in table:
                return self._send(404, _error(404, "Resource not found"))
            shape = {"tracks": full_track, "albums": full_album, "artists": full_artist}[kind]
            return self._send(200, shape(api, cat, ident))
        if route in ("tracks", "albums", "artists"):
            # 2026: the batch look-ups are gone for development-mode apps.
            return self._send(403, _error(403, "Forbidden"))
        self._send(404, _error(404, "Service not found"))

    # --- control ------------------------------------------------------------------------
    def _control(self, action: str, p: dict) -> None:
        fake = self.fake
        if action == "reset":
            fake.reset()
            return self._send(200, {"ok": True})
        if action == "clock":
            with fake.lock:
                if p.get("real"):
                    fake.frozen_now_ms = None
                elif "now" in p:
                    fake.frozen_now_ms = parse_instant(p["now"])
                elif "advance_seconds" in p:
                    base = fake.frozen_now_ms if fake.frozen_now_ms is not None else int(time.time() * 1000)
                    fake.frozen_now_ms = base + int(float(p["advance_seconds"]) * 1000)
                else:
                    return self._send(400, {"error": "give now, advance_seconds or real"})
            return self._send(200, {"now": dl.iso_ms(fake.now_ms()), "now_ms": fake.now_ms()})
        if action == "fault":
            if p.get("kind") not in ("429", "quota", "5xx", "invalid_grant", "expire_token"):
                return self._send(400, {"error": "kind must be 429, quota, 5xx, invalid_grant or expire_token"})
            if p.get("user_id") and p["user_id"] not in fake.users:
                return self._send(404, {"error": "unknown user"})
            fault = {"kind": p["kind"], "user_id": p.get("user_id"), "path": p.get("path"),
                     "retry_after": p.get("retry_after"), "status": p.get("status"),
                     "count": int(p.get("count", 1))}
            with fake.lock:
                fake.faults.append(fault)
            return self._send(200, {"ok": True, "fault": fault})
        if action == "burst":
            if p.get("user_id") not in fake.users:
                return self._send(404, {"error": "unknown user"})
            burst = fake.add_burst(p["user_id"], int(p.get("count", 60)))
            return self._send(200, {"ok": True, "plays": len(burst),
                                    "from": dl.iso_ms(burst[-1].played_at_ms) if burst else None,
                                    "to": dl.iso_ms(burst[0].played_at_ms) if burst else None})
        if action == "listeners":
            try:
                count = int(p["count"])
            except (KeyError, TypeError, ValueError):
                return self._send(400, {"error": "give count"})
            return self._send(200, {"ok": True, "listeners": fake.add_listeners(count)})
        if action == "rate_limit":
            try:
                per_second = float(p["per_second"]) if p.get("per_second") is not None else None
                window = float(p.get("window_seconds", 30))
            except (TypeError, ValueError):
                return self._send(400, {"error": "per_second and window_seconds must be numbers"})
            if (per_second is not None and per_second <= 0) or window <= 0:
                return self._send(400, {"error": "per_second and window_seconds must be positive"})
            fake.set_rate_limit(per_second, window)
            return self._send(200, {"ok": True, "per_second": per_second, "window_seconds": window})
        self._send(404, {"error": f"unknown control {action!r}"})


def make_server(port: int = 8901, host: str = "127.0.0.1", fake: FakeSpotify | None = None) -> ThreadingHTTPServer:
    """A ready-to-serve HTTP server (call `serve_forever`); port 0 picks a free one."""
    fake = fake or FakeSpotify()
    handler = type("BoundHandler", (Handler,), {"fake": fake})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.fake = fake  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("WRAPPED_FAKE_SPOTIFY_PORT", 8901)))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FAKE_SPOTIFY_SEED", 7)))
    parser.add_argument("--users", type=int, default=int(os.environ.get("FAKE_SPOTIFY_USERS", 3)))
    parser.add_argument("--rate-limit", type=float, default=float(os.environ.get("FAKE_SPOTIFY_RATE_LIMIT", 0)),
                        help="app-wide Web API requests per second (rolling 30 s window); 0: no limit")
    parser.add_argument("--client-id", default=os.environ.get("SPOTIFY_CLIENT_ID") or "demo-client-id")
    parser.add_argument("--client-secret", default=os.environ.get("SPOTIFY_CLIENT_SECRET") or "demo-client-secret")
    args = parser.parse_args(argv)
    now = os.environ.get("FAKE_SPOTIFY_NOW")
    fake = FakeSpotify(args.seed, args.users, args.client_id, args.client_secret,
                       parse_instant(now) if now else None, rate_limit=args.rate_limit or None)
    server = make_server(args.port, args.host, fake)
    print(f"fake Spotify on http://{args.host}:{server.server_address[1]} "
          f"(seed {args.seed}, {args.users} users)", flush=True)
    serve_until_interrupted(server)


if __name__ == "__main__":
    main()
