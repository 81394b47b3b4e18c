"""Artist genres from MusicBrainz's artist tags: Spotify gives new apps no genres at all.

Opt-in per installation (Variable `wrapped_musicbrainz_genres`, default false), because it sends
artist names (and nothing else) to MusicBrainz. `spotify_ingest` runs `fill_genres` every hour:
artists in `raw.artists` that Spotify gave no genres and that `app.artist_genres` does not hold
yet are looked up, the most played of the last weeks first, at most `per_run` a run. The answer is
kept once per artist, a miss too (status 'not_found'), so no artist is ever asked for twice. A
name-only artist from an export (`name:artist:…`) is skipped once a real artist has its name.

One artist = one request, the search `GET {base}/artist?query=artist:"<name>"&limit=5&fmt=json`,
whose candidates carry their tags and the votes for each. The candidate whose name (or an alias)
equals the Spotify name is kept; several namesakes: the one with the most tag votes, the better
known one, whom a listener is likelier to play. Its tags that are MusicBrainz genres (the list from
`GET {base}/genre/all?fmt=txt`, read once a run; "seen live" or "british" are tags, not genres),
most votes first, at most MAX_GENRES, become the artist's genres.

MusicBrainz allows one request per second per application, with a User-Agent that names it and a
contact, and answers a faster caller 503. Requests are spaced at least a second apart (a little
more); an installation with its own MusicBrainz mirror, which has no such limit, may ask for more
(the connection's `requests_per_second`). A 503 waits
(its Retry-After, else a few seconds) and tries again, up to MAX_RETRIES, then stops the run: the rest
waits for the next hour. Timeouts and other 5xx stop the run too; nothing is stored for that artist.
A 400 (a name the search cannot parse) is stored as a miss; a 403 (User-Agent refused) fails the task.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Callable

import requests

from weekly_wrapped import contracts, db
from weekly_wrapped.spotify.client import RateLimiter

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://musicbrainz.org/ws/2/"
APP_NAME, APP_VERSION = "WeeklyWrapped", "0.1"
MAX_GENRES = 5
MIN_SCORE = 90  # MusicBrainz's own match score (0-100) below which a candidate is not the artist
SEARCH_LIMIT = 5
REQUESTS_PER_SECOND = 1.0  # musicbrainz.org's rule for every application
# MusicBrainz counts requests as they arrive; 5% slack keeps network jitter from making two
# requests look closer together than the rule allows.
SPACING_SLACK = 1.05
REQUEST_SPACING_S = SPACING_SLACK / REQUESTS_PER_SECOND
MAX_RETRIES = 3
DEFAULT_RETRY_S = 3.0
TIMEOUT_S = 20
# Artists whose plays of the last RECENT_DAYS decide who is looked up first.
RECENT_DAYS = 35
NAME_KEY_LIKE = contracts.NAME_KEY_PREFIX + "%"


# --- pure parts ---------------------------------------------------------------------------------

def user_agent(contact: str) -> str:
    """The User-Agent MusicBrainz asks for: application/version ( contact )."""
    return f"{APP_NAME}/{APP_VERSION} ( {contact} )"


def normalized(name: str) -> str:
    """A name for comparing: Unicode-compatible forms folded, case folded, spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def search_query(name: str) -> str:
    """A Lucene phrase query for the artist field; inside quotes only `\\` and `"` need escaping."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'artist:"{escaped}"'


def parse_genre_list(text: str) -> frozenset[str]:
    """MusicBrainz's genre names, one a line (`genre/all?fmt=txt`)."""
    return frozenset(normalized(line) for line in text.splitlines() if line.strip())


def _names_of(candidate: dict) -> set[str]:
    names = {normalized(candidate.get("name") or "")}
    names |= {normalized(alias.get("name") or "") for alias in candidate.get("aliases") or []}
    return names - {""}


def _votes(candidate: dict) -> int:
    return sum(max(int(tag.get("count") or 0), 0) for tag in candidate.get("tags") or [])


def choose_artist(name: str, search_answer: dict) -> dict | None:
    """The search candidate that is this artist: same name (or alias), a good score, most tag votes."""
    wanted = normalized(name)
    same_name = [c for c in search_answer.get("artists") or []
                 if int(c.get("score") or 0) >= MIN_SCORE and wanted in _names_of(c)]
    if not same_name:
        return None
    # max() keeps the first of equals: MusicBrainz's own order breaks ties.
    return max(same_name, key=_votes)


def genres_of(candidate: dict, genre_names: frozenset[str], limit: int = MAX_GENRES) -> list[str]:
    """The candidate's tags that are genres, with at least one net vote, most votes first."""
    votes: dict[str, int] = {}
    for tag in candidate.get("tags") or []:
        tag_name = normalized(tag.get("name") or "")
        count = int(tag.get("count") or 0)
        if tag_name in genre_names and count > 0:
            votes[tag_name] = max(votes.get(tag_name, 0), count)
    return sorted(votes, key=lambda g: (-votes[g], g))[:limit]


@dataclass(frozen=True)
class Lookup:
    status: str                   # found / not_found
    genres: tuple[str, ...] = ()
    musicbrainz_id: str | None = None


def lookup_from_search(name: str, search_answer: dict, genre_names: frozenset[str]) -> Lookup:
    candidate = choose_artist(name, search_answer)
    if candidate is None:
        return Lookup("not_found")
    return Lookup("found", tuple(genres_of(candidate, genre_names)), candidate.get("id"))


# --- the MusicBrainz client (I/O) ---------------------------------------------------------------

@dataclass(frozen=True)
class MusicBrainzConfig:
    base_url: str  # the web service root, e.g. DEFAULT_BASE_URL
    contact: str   # an e-mail address or URL where MusicBrainz can reach the installation's operator
    # musicbrainz.org allows one; a mirror of one's own allows what it can serve.
    requests_per_second: float = REQUESTS_PER_SECOND


class MusicBrainzUnavailable(Exception):
    """Rate-limited past our retries, a 5xx or a timeout: try again in a later run."""


class MusicBrainzRefused(Exception):
    """403: MusicBrainz refuses this User-Agent; a configuration problem, no retry helps."""


class BadQuery(Exception):
    """400: the search could not parse the query built from this name."""


class MusicBrainzClient:
    """GETs under the web service's base URL, at most `requests_per_second`, with our User-Agent."""

    def __init__(self, config: MusicBrainzConfig, limiter: RateLimiter | None = None,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep):
        self.base_url = config.base_url.rstrip("/") + "/"
        self.limiter = limiter or RateLimiter(config.requests_per_second / SPACING_SLACK, burst=1)
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = user_agent(config.contact)
        self.sleep = sleep
        self.requests = 0

    def get(self, path: str, params: dict) -> requests.Response:
        for attempt in range(MAX_RETRIES + 1):
            self.limiter.acquire()
            self.requests += 1
            try:
                response = self.session.get(self.base_url + path, params=params, timeout=TIMEOUT_S)
            except requests.RequestException as exc:
                raise MusicBrainzUnavailable(f"{type(exc).__name__}: {exc}") from exc
            if response.status_code == 503 and attempt < MAX_RETRIES:
                wait = _retry_after(response.headers.get("Retry-After"))
                log.info("MusicBrainz answered 503 (rate limit); waiting %.1f s", wait)
                self.limiter.pause(wait)  # holds the next request back too
                continue
            if response.status_code == 503 or response.status_code >= 500:
                raise MusicBrainzUnavailable(f"HTTP {response.status_code} from MusicBrainz {path}")
            if response.status_code == 403:
                raise MusicBrainzRefused(f"MusicBrainz refused {self.session.headers['User-Agent']!r}: "
                                         f"{response.text[:200]}")
            if response.status_code == 400:
                raise BadQuery(response.text[:200])
            response.raise_for_status()
            return response
        raise AssertionError("unreachable")

    def search_artist(self, name: str) -> dict:
        return self.get("artist", {"query": search_query(name), "limit": SEARCH_LIMIT, "fmt": "json"}).json()

    def genre_names(self) -> frozenset[str]:
        return parse_genre_list(self.get("genre/all", {"fmt": "txt"}).text)


def _retry_after(value: str | None) -> float:
    try:
        return max(float(value), 1.0) if value else DEFAULT_RETRY_S
    except ValueError:
        return DEFAULT_RETRY_S


# --- the warehouse side ---------------------------------------------------------------------------

# Artists Spotify gave no genres, with their plays of the last RECENT_DAYS (the look-up order).
# A name-only artist (`name:artist:…`, from an export) whose name a real artist has is that
# artist, who is looked up under their own id: asking for the name twice would be a wasted request.
# `materialized`: the plays of the last weeks are counted once. Inlined, the planner (expecting
# one artist without genres) ran that count again for every such artist: 4 s for 150 artists.
_CANDIDATES = (
    "with recent as materialized ("
    "  select credited.artist_id, count(*) as plays from raw.plays p "
    "  join raw.tracks t on t.track_id = p.track_id "
    "  cross join lateral unnest(t.artist_ids) as credited (artist_id) "
    "  where p.played_at > now() - make_interval(days => %(recent_days)s) group by credited.artist_id) "
    "select a.artist_id, a.name, coalesce(r.plays, 0) as plays, "
    "  exists (select 1 from app.artist_genres g where g.artist_id = a.artist_id) as looked_up "
    "from raw.artists a left join recent r on r.artist_id = a.artist_id "
    "where coalesce(cardinality(a.genres), 0) = 0 "
    "and not (a.artist_id like %(name_key)s and exists (select 1 from raw.artists named "
    "  where named.artist_id not like %(name_key)s and lower(named.name) = lower(a.name)))"
)


def _params(limit: int | None) -> dict:
    return {"recent_days": RECENT_DAYS, "name_key": NAME_KEY_LIKE, "limit": limit}


def artists_to_look_up(dsn: str, limit: int) -> list[tuple[str, str]]:
    """(artist_id, name) of artists without genres from Spotify nor a stored look-up, most played lately first."""
    with db.transaction(dsn) as cur:
        cur.execute(f"select artist_id, name from ({_CANDIDATES}) c where not looked_up "
                    "order by plays desc, artist_id limit %(limit)s", _params(limit))
        rows = [(r[0], r[1]) for r in cur.fetchall()]
    return rows


def not_looked_up_among_most_played(dsn: str, top: int) -> int:
    """Of the `top` most played artists lately (without Spotify genres), how many have no stored look-up."""
    with db.transaction(dsn) as cur:
        cur.execute(f"select count(*) filter (where not looked_up) from (select * from ({_CANDIDATES}) c "
                    "order by plays desc, artist_id limit %(limit)s) top", _params(top))
        missing = cur.fetchone()[0]
    return missing


def save_lookup(dsn: str, artist_id: str, name: str, lookup: Lookup) -> None:
    with db.transaction(dsn) as cur:
        cur.execute(
            "insert into app.artist_genres (artist_id, artist_name, genres, status, musicbrainz_id) "
            "values (%s, %s, %s, %s, %s) on conflict (artist_id) do update set artist_name = excluded.artist_name, "
            "genres = excluded.genres, status = excluded.status, musicbrainz_id = excluded.musicbrainz_id, "
            "fetched_at = now()",
            (artist_id, name, list(lookup.genres), lookup.status, lookup.musicbrainz_id))


def genre_counts(dsn: str) -> dict[str, int]:
    """Stored look-ups by outcome, and the artists still waiting for one."""
    with db.transaction(dsn) as cur:
        cur.execute(
            "select count(*) filter (where status = 'found' and cardinality(genres) > 0), "
            "count(*) filter (where status = 'found' and cardinality(genres) = 0), "
            "count(*) filter (where status = 'not_found') from app.artist_genres")
        with_genres, without_genres, not_found = cur.fetchone()
        cur.execute(f"select count(*) from ({_CANDIDATES}) c where not looked_up", _params(None))
        waiting = cur.fetchone()[0]
    return {"with_genres": with_genres, "no_genre_tags": without_genres, "not_found": not_found,
            "waiting": waiting}


# --- one run ---------------------------------------------------------------------------------------

@dataclass
class GenresResult:
    selected: int = 0       # artists taken this run
    found: int = 0          # matched on MusicBrainz (with or without genre tags)
    with_genres: int = 0    # of those, with at least one genre
    not_found: int = 0      # no MusicBrainz artist of that name: stored as a miss
    requests: int = 0       # requests sent to MusicBrainz, the genre list and retries included
    stopped: str | None = None  # why the run stopped before its slice was done
    genres: dict[str, list[str]] = field(default_factory=dict)  # artist name -> genres found

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def fill_genres(dsn: str, config: MusicBrainzConfig, per_run: int, *,
                client: MusicBrainzClient | None = None) -> GenresResult:
    """Look up and store the genres of at most `per_run` artists; stops early when MusicBrainz is unavailable.

    Raises `MusicBrainzRefused` (403: fix the User-Agent's contact) after storing what was found.
    """
    result = GenresResult()
    artists = artists_to_look_up(dsn, per_run) if per_run > 0 else []
    result.selected = len(artists)
    if not artists:
        return result
    client = client or MusicBrainzClient(config)
    try:
        genre_names = client.genre_names()
        for artist_id, name in artists:
            try:
                lookup = lookup_from_search(name, client.search_artist(name), genre_names)
            except BadQuery:
                lookup = Lookup("not_found")
            save_lookup(dsn, artist_id, name, lookup)  # at once: a later stop keeps what was found
            if lookup.status == "found":
                result.found += 1
                result.with_genres += bool(lookup.genres)
                result.genres[name] = list(lookup.genres)
            else:
                result.not_found += 1
    except MusicBrainzUnavailable as exc:
        result.stopped = str(exc)
    finally:
        result.requests = client.requests
    log.info("musicbrainz genres: %s", result.as_dict())
    return result
