"""A local fake of MusicBrainz's web service (WS/2, JSON), for the genre look-ups.

Run it as `python -m wrapped_dev.fakes.musicbrainz_server --port 8903`; the base URL is
`http://127.0.0.1:8903/ws/2/`. It serves what `weekly_wrapped.ingest.genres` uses, in the real shapes:

- `GET /ws/2/artist?query=artist:"<name>"&limit=N&fmt=json`: `{"created", "count", "offset",
  "artists": [{"id", "type", "score", "name", "sort-name", "tags": [{"count", "name"}]}]}`;
  an exact name (case-insensitive) scores 100, a name sharing a word with the query 60.
- `GET /ws/2/genre/all?fmt=txt`: every genre name, one a line.

And behaves as MusicBrainz does towards clients: a request without a User-Agent, or with a
library's default one, gets 403; a request less than a second after the previous answered one
gets 503 (the whole server counts as one application, as MusicBrainz counts per application/IP).
`--requests-per-second N` allows N a second instead; 0, no limit, as a mirror of one's own (the stack's).

The artists are the demo catalogue's (`demo_listener.build_catalogue(seed)`), each with tags drawn
deterministically from its name: one to four genres with votes, sometimes a tag that is no genre
("seen live"), about one in twelve unknown to MusicBrainz, and some with a lesser-known namesake.
Tests may pass their own artists to `make_server`.

Not MusicBrainz's: `GET /_fake/stats` (requests by status, user agents seen), `POST /_fake/reset`,
`GET /healthz`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from wrapped_dev.fakes import serve_until_interrupted

log = logging.getLogger("wrapped_dev.fakes.musicbrainz")

MIN_INTERVAL_S = 1.0
# Genres the fake's MusicBrainz knows (a part of the real list); the demo's tags are drawn from them.
GENRES = ("alternative rock", "ambient", "art pop", "art rock", "bossa nova", "dream pop", "drum and bass",
          "electronic", "folk", "funk", "glam rock", "hip hop", "house", "indie pop", "indie rock", "jazz",
          "k-pop", "neo-soul", "new wave", "pop", "pop rock", "post-punk", "r&b", "reggaeton",
          "rock", "shoegaze", "singer-songwriter", "soul", "synth-pop", "techno", "trip hop")
NOT_GENRES = ("seen live", "british", "female vocalists", "00s", "favourites")
GENERIC_AGENTS = re.compile(r"^(python-requests|python-urllib|curl|wget|java|go-http-client|okhttp)/", re.I)
RATE_LIMITED = ("Your requests are exceeding the allowable rate limit. Please see "
                "https://musicbrainz.org/doc/MusicBrainz_API/Rate_Limiting for more information.")


def _words(name: str) -> set[str]:
    return set(re.findall(r"\w+", name.casefold()))


def demo_artists(seed: int = 7) -> list[dict]:
    """MusicBrainz's entries for the demo catalogue's artists: {"id", "name", "type", "tags"}."""
    from wrapped_dev.fakes import demo_listener as dl

    entries = []
    for artist in dl.build_catalogue(seed).artists.values():
        rng = random.Random(hashlib.sha256(f"musicbrainz/{artist.name}".encode()).digest())
        if rng.random() < 1 / 12:
            continue  # MusicBrainz does not know them
        tags = [{"name": g, "count": rng.randint(1, 12)} for g in rng.sample(GENRES, rng.randint(1, 4))]
        if rng.random() < 0.3:
            tags.append({"name": rng.choice(NOT_GENRES), "count": rng.randint(1, 20)})
        entries.append({"name": artist.name, "tags": tags,
                        "type": "Group" if artist.name.startswith("The ") else "Person"})
        if rng.random() < 0.1:  # a lesser-known namesake, with fewer votes
            entries.append({"name": artist.name, "type": "Person",
                            "tags": [{"name": rng.choice(GENRES), "count": 1}]})
    return entries


class FakeState:
    def __init__(self, artists: list[dict], min_interval_s: float = MIN_INTERVAL_S):
        self.artists = [{"id": a.get("id") or str(uuid.UUID(bytes=hashlib.md5(f"{a['name']}/{i}".encode()).digest())),
                         "type": a.get("type", "Person"), "name": a["name"], "tags": a.get("tags", [])}
                        for i, a in enumerate(artists)]
        self.min_interval_s = min_interval_s
        self.lock = threading.Lock()
        self.last_answered = None  # monotonic time of the last request answered (not 503)
        self.by_status: dict[str, int] = {}
        self.user_agents: set[str] = set()
        self.queries: list[str] = []

    def admit(self, agent: str) -> int | None:
        """The status refusing this request (403, 503), or None; counts it."""
        with self.lock:
            now = time.monotonic()
            if not agent or GENERIC_AGENTS.match(agent):
                status = 403
            elif self.last_answered is not None and now - self.last_answered < self.min_interval_s:
                status = 503
            else:
                status = None
                self.last_answered = now
                self.user_agents.add(agent)
            return status

    def record(self, status: int) -> None:
        with self.lock:
            self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1

    def stats(self) -> dict:
        with self.lock:
            return {"by_status": dict(self.by_status), "user_agents": sorted(self.user_agents),
                    "queries": list(self.queries)}

    def reset(self) -> None:
        with self.lock:
            self.by_status, self.user_agents, self.queries = {}, set(), []
            self.last_answered = None


def query_name(query: str) -> str:
    """The artist name of an `artist:"..."` query (or the bare query)."""
    match = re.fullmatch(r'\s*artist:"((?:[^"\\]|\\.)*)"\s*', query)
    if not match:
        return query.strip()
    return re.sub(r"\\(.)", r"\1", match[1])


def search(artists: list[dict], query: str, limit: int) -> dict:
    name = query_name(query)
    wanted, words = name.casefold(), _words(name)
    hits = []
    for artist in artists:
        if artist["name"].casefold() == wanted:
            score = 100
        elif words & _words(artist["name"]):
            score = 60
        else:
            continue
        hits.append({"id": artist["id"], "type": artist["type"], "score": score, "name": artist["name"],
                     "sort-name": artist["name"], "tags": artist["tags"]})
    hits.sort(key=lambda h: -h["score"])  # stable: catalogue order among equals
    return {"created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"), "count": len(hits),
            "offset": 0, "artists": hits[:limit]}


class Handler(BaseHTTPRequestHandler):
    server_version = "FakeMusicBrainz/1.0"

    @property
    def state(self) -> FakeState:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: str, content_type: str = "application/json; charset=utf-8",
              headers: dict | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload), headers=headers)

    def do_GET(self):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/healthz":
            return self._json(200, {"status": "ok"})
        if url.path == "/_fake/stats":
            return self._json(200, self.state.stats())
        if url.path not in ("/ws/2/artist", "/ws/2/artist/", "/ws/2/genre/all"):
            return self._json(404, {"error": "Not Found"})
        refused = self.state.admit(self.headers.get("User-Agent", ""))
        if refused == 403:
            self.state.record(403)
            return self._json(403, {"error": "Please provide a meaningful User-Agent "
                                             "(https://musicbrainz.org/doc/MusicBrainz_API/Rate_Limiting)"})
        if refused == 503:
            self.state.record(503)
            return self._json(503, {"error": RATE_LIMITED}, headers={"Retry-After": "1"})
        if url.path == "/ws/2/genre/all":
            self.state.record(200)
            return self._send(200, "\n".join(sorted(GENRES)) + "\n", "text/plain; charset=utf-8")
        if not query.get("query"):
            self.state.record(400)
            return self._json(400, {"error": "You must specify a query"})
        with self.state.lock:
            self.state.queries.append(query["query"])
        limit = min(max(int(query.get("limit", 25)), 1), 100)
        self.state.record(200)
        return self._json(200, search(self.state.artists, query["query"], limit))

    def do_POST(self):
        if urlsplit(self.path).path == "/_fake/reset":
            self.state.reset()
            return self._json(200, {"reset": True})
        return self._json(404, {"error": "Not Found"})


def make_server(host: str = "127.0.0.1", port: int = 0, artists: list[dict] | None = None,
                min_interval_s: float = MIN_INTERVAL_S, seed: int = 7) -> ThreadingHTTPServer:
    """A ready, not yet serving, fake; port 0 picks a free port. `artists`: [{"name", "tags"}], else the demo's."""
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    entries = demo_artists(seed) if artists is None else artists
    server.state = FakeState(entries, min_interval_s)  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> None:
    from wrapped_dev.config import load_settings

    settings = load_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.fake_musicbrainz_port)
    parser.add_argument("--seed", type=int, default=7, help="the demo catalogue's seed")
    parser.add_argument("--requests-per-second", type=float, default=1 / MIN_INTERVAL_S,
                        help="answer 503 to requests faster than this (musicbrainz.org: 1; 0: no limit)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    min_interval_s = 1 / args.requests_per_second if args.requests_per_second > 0 else 0.0
    server = make_server(args.host, args.port, min_interval_s=min_interval_s, seed=args.seed)
    log.info("fake MusicBrainz listening on http://%s:%s/ws/2/", args.host, server.server_port)
    serve_until_interrupted(server)


if __name__ == "__main__":
    main()
