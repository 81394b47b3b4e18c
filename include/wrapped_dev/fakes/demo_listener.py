"""A deterministic synthetic Spotify listener, for the fake Spotify server and the demo.

Everything here is a pure function of a seed: the catalogue (artists, albums and
singles, tracks with several artists) and, per user and local calendar day, the
listening sessions of that day. Generating day by day (each day from its own RNG
seed) means any time window gives the same plays no matter how it is queried,
which is what makes overlapping polls testable.

The listener behaves like a person: favourites follow a Zipf-like curve, the day
has a rhythm in the user's own time zone (commute, evening, late weekends),
plays come in sessions, songs get repeated, new artists are discovered as the
weeks go by, and skips (< 30 s) happen but are never reported, as on Spotify.
"""

from __future__ import annotations

import hashlib
import random
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

# Spotify only reports plays of at least 30 seconds.
MIN_REPORTED_MS = 30_000
# Discovery clock: week 0 starts here; each week the listener knows a few more artists.
DISCOVERY_EPOCH = date(2026, 1, 5)

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SYLLABLES = ("la", "mo", "ri", "ka", "ne", "vo", "sa", "tu", "mi", "do", "ze", "lu",
              "po", "an", "el", "or", "is", "ya", "ko", "be", "ra", "fi", "no", "ju")
_WORDS = ("Midnight", "Neon", "Paper", "Golden", "Echo", "Velvet", "Static", "Ocean",
          "Glass", "Summer", "Wild", "Silver", "Electric", "Quiet", "Northern", "Broken",
          "Hollow", "Satellite", "Honey", "Winter", "Dream", "Fire", "Lights", "Rivers",
          "Hearts", "Motion", "Shadows", "Signal", "Gardens", "Youth", "Tides", "Stars")


def spotify_id(*parts: object) -> str:
    """A stable 22-character base62 id (Spotify's id shape) derived from `parts`."""
    digest = int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest(), "big")
    chars = []
    for _ in range(22):
        digest, rem = divmod(digest, 62)
        chars.append(_BASE62[rem])
    return "".join(chars)


@dataclass(frozen=True)
class Artist:
    id: str
    name: str
    image_url: str


@dataclass(frozen=True)
class Album:
    id: str
    name: str
    album_type: str  # album / single / compilation
    release_date: str
    release_date_precision: str  # day / month / year
    artist_ids: tuple[str, ...]
    image_url: str
    track_ids: tuple[str, ...]


@dataclass(frozen=True)
class Track:
    id: str
    name: str
    duration_ms: int
    explicit: bool
    album_id: str
    artist_ids: tuple[str, ...]
    track_number: int
    disc_number: int


@dataclass(frozen=True)
class Catalogue:
    artists: dict[str, Artist]
    albums: dict[str, Album]
    tracks: dict[str, Track]
    artist_order: tuple[str, ...]  # artist ids in a fixed order (index = "artist number")
    tracks_by_artist: dict[str, tuple[str, ...]]  # primary-artist -> track ids
    newcomers: tuple[str, ...] = ()  # artist ids every listener discovers last, in this order


@dataclass(frozen=True)
class DemoUser:
    user_id: str
    display_name: str
    time_zone: str
    email: str
    # Hours (local) around which sessions start, with weights: the user's daily rhythm.
    rhythm: tuple[tuple[int, float], ...]
    sessions_per_day: float


def _image(kind: str, ident: str) -> str:
    return f"https://i.scdn.co/image/ab67616d0000b273{spotify_id(kind, ident)[:24].lower()}"


def _name(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _artist_name(rng: random.Random) -> str:
    first = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
    if rng.random() < 0.35:
        band = f"The {rng.choice(_WORDS)} {rng.choice(_WORDS)}"
        return band if band.endswith("s") else band + "s"
    if rng.random() < 0.5:
        last = "".join(rng.choice(_SYLLABLES) for _ in range(2)).capitalize()
        return f"{first} {last}"
    return first


# Artists nobody knows at first, heard for the first time two a week once a listener knows
# all of the 150 core artists (in 2027): enough for discoveries to go on until the 2040s.
NEWCOMER_ARTISTS = 1000


@lru_cache(maxsize=8)
def build_catalogue(seed: int = 7, n_artists: int = 150, n_newcomers: int = NEWCOMER_ARTISTS) -> Catalogue:
    """The shared music catalogue: artists with albums and singles; ~20% of tracks have featured artists.

    The newcomers come from a random stream of their own, so adding them changes nothing
    about the core artists, their releases or anybody's plays before the newcomers' turn.
    """
    rng = random.Random(f"catalogue/{seed}")
    artists: dict[str, Artist] = {}
    order = []
    for i in range(n_artists):
        aid = spotify_id(seed, "artist", i)
        artists[aid] = Artist(aid, _artist_name(rng), _image("artist", aid))
        order.append(aid)
    albums: dict[str, Album] = {}
    tracks: dict[str, Track] = {}
    by_artist: dict[str, list[str]] = {aid: [] for aid in order}
    for i, aid in enumerate(order):
        _add_releases(rng, seed, i, aid, order, albums, tracks, by_artist)
    newcomer_rng = random.Random(f"catalogue-newcomers/{seed}")
    newcomers = []
    for i in range(n_artists, n_artists + n_newcomers):
        aid = spotify_id(seed, "artist", i)
        artists[aid] = Artist(aid, _artist_name(newcomer_rng), _image("artist", aid))
        by_artist[aid] = []
        _add_releases(newcomer_rng, seed, i, aid, order, albums, tracks, by_artist)
        newcomers.append(aid)
    return Catalogue(artists, albums, tracks, tuple(order),
                     {a: tuple(ts) for a, ts in by_artist.items()}, tuple(newcomers))


def _add_releases(rng, seed, i, aid, order, albums, tracks, by_artist) -> None:
    """Artist `aid`'s albums and singles; collaborators and featured artists come from `order`."""
    releases = [("album", rng.randint(7, 13)) for _ in range(rng.randint(1, 3))]
    releases += [("single", rng.randint(1, 2)) for _ in range(rng.randint(1, 4))]
    for r, (album_type, n_tracks) in enumerate(releases):
        alb_id = spotify_id(seed, "album", i, r)
        year = rng.randint(1995, 2026)
        precision = rng.choices(("day", "month", "year"), weights=(85, 5, 10))[0]
        release = {"day": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                   "month": f"{year}-{rng.randint(1, 12):02d}",
                   "year": f"{year}"}[precision]
        album_artists = (aid,)
        # Collaborations: some whole releases are by two artists.
        if rng.random() < 0.08:
            album_artists = (aid, rng.choice(order))
        title = _name(rng, rng.randint(1, 3))
        track_ids = []
        for t in range(n_tracks):
            tid = spotify_id(seed, "track", i, r, t)
            track_artists = list(album_artists)
            if rng.random() < 0.2:  # "feat." artists
                for other in rng.sample(order, rng.randint(1, 2)):
                    if other not in track_artists:
                        track_artists.append(other)
            name = title if album_type == "single" and t == 0 else _name(rng, rng.randint(1, 3))
            # Durations around 3:25, kept plausible: 1:30 to 7:00.
            duration = min(max(int(rng.gauss(205_000, 45_000)), 90_000), 420_000)
            tracks[tid] = Track(
                id=tid, name=name, duration_ms=duration, explicit=rng.random() < 0.25,
                album_id=alb_id, artist_ids=tuple(dict.fromkeys(track_artists)),
                track_number=t + 1, disc_number=1,
            )
            track_ids.append(tid)
            by_artist[aid].append(tid)
        albums[alb_id] = Album(alb_id, title, album_type, release, precision,
                               album_artists, _image("album", alb_id), tuple(track_ids))


_NAMED_USERS = (
    ("demo-ana", "Ana", "Europe/Berlin", ((8, 1.0), (13, 0.6), (19, 1.4), (22, 0.8)), 3.0),
    ("demo-marcus", "Marcus", "America/New_York", ((7, 1.3), (12, 0.5), (17, 1.2), (21, 1.0)), 2.6),
    ("demo-yuki", "Yuki", "Asia/Tokyo", ((9, 0.8), (15, 0.7), (20, 1.2), (23, 1.3)), 3.4),
)
_EXTRA_ZONES = ("Europe/London", "America/Los_Angeles", "Australia/Sydney", "America/Sao_Paulo",
                "Asia/Kolkata", "Africa/Lagos")


def demo_users(n: int = 3) -> list[DemoUser]:
    """The fake server's listeners: three named ones in different time zones, then numbered extras."""
    users = []
    for i in range(n):
        if i < len(_NAMED_USERS):
            uid, name, tz, rhythm, per_day = _NAMED_USERS[i]
        else:
            uid, name = f"demo-user-{i + 1:03d}", f"Listener {i + 1}"
            tz = _EXTRA_ZONES[i % len(_EXTRA_ZONES)]
            rhythm, per_day = _NAMED_USERS[i % 3][3], 2.5
        users.append(DemoUser(uid, name, tz, f"{uid}@wrapped.example", rhythm, per_day))
    return users


@dataclass(frozen=True)
class Play:
    user_id: str
    track_id: str
    played_at_ms: int  # END of the play, UTC epoch ms
    ms_played: int
    context_uri: str | None


def _taste(seed: int, user_id: str, cat: Catalogue) -> tuple[str, ...]:
    """The user's artists in order of preference (rank 0 = favourite)."""
    order = list(cat.artist_order)
    random.Random(f"taste/{seed}/{user_id}").shuffle(order)
    return tuple(order) + cat.newcomers


def _known_artists(week: int, total: int) -> int:
    """How many of their ranked artists the user knows in week `week`: discoveries over time."""
    return min(total, 12 + 2 * max(week, 0))


def _zipf_pick(rng: random.Random, n: int, s: float = 1.1) -> int:
    weights = _zipf_weights(n, s)
    return bisect_right(weights, rng.random() * weights[-1])


@lru_cache(maxsize=512)
def _zipf_weights(n: int, s: float) -> list[float]:
    acc, out = 0.0, []
    for k in range(1, n + 1):
        acc += 1.0 / k ** s
        out.append(acc)
    return out


@lru_cache(maxsize=4096)
def _day_plays_cached(seed: int, user: DemoUser, day: date) -> tuple[Play, ...]:
    cat = build_catalogue(seed)
    rng = random.Random(f"day/{seed}/{user.user_id}/{day.isoformat()}")
    tz = ZoneInfo(user.time_zone)
    taste = _taste(seed, user.user_id, cat)
    week = (day - DISCOVERY_EPOCH).days // 7
    known = _known_artists(week, len(taste))
    weekend = day.weekday() >= 5
    n_sessions = max(0, int(rng.gauss(user.sessions_per_day * (1.3 if weekend else 1.0), 1.0) + 0.5))
    hours, weights = zip(*user.rhythm)
    plays: list[Play] = []
    for _ in range(n_sessions):
        hour = rng.choices(hours, weights=weights)[0] + (1 if weekend else 0)
        minute = rng.randint(0, 59)
        start = datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(
            hours=hour, minutes=minute, seconds=rng.randint(0, 59))
        t_ms = int(start.timestamp() * 1000) + rng.randint(0, 999)
        # A session sticks to an album or a mood: a context for most of it.
        context = None
        last_track = None
        for _ in range(max(2, int(rng.expovariate(1 / 11)))):
            roll = rng.random()
            if last_track and roll < 0.07:
                tid = last_track  # played it again
            elif roll < 0.12 and known < len(taste):
                # A discovery: an artist just beyond what the user knows this week.
                artist = taste[min(len(taste) - 1, known + rng.randint(0, 3))]
                tid = rng.choice(cat.tracks_by_artist[artist])
            else:
                artist = taste[_zipf_pick(rng, known)]
                pool = cat.tracks_by_artist[artist]
                # Favourite songs within an artist too.
                tid = pool[min(len(pool) - 1, _zipf_pick(rng, len(pool), 1.3))]
            track = cat.tracks[tid]
            if context is None or rng.random() < 0.15:
                context = rng.choice((f"spotify:album:{track.album_id}",
                                      f"spotify:playlist:{spotify_id(seed, 'playlist', user.user_id, rng.randint(0, 4))}",
                                      f"spotify:artist:{track.artist_ids[0]}", None))
            skip = rng.random() < 0.14
            if skip:
                ms = rng.randint(2_000, MIN_REPORTED_MS - 1)
            elif rng.random() < 0.2:
                ms = int(track.duration_ms * rng.uniform(0.4, 0.95))
            else:
                ms = track.duration_ms
            t_ms += ms
            if ms >= MIN_REPORTED_MS:
                plays.append(Play(user.user_id, tid, t_ms, ms, context))
                last_track = tid
            t_ms += rng.randint(0, 1500)  # the gap between songs
    plays.sort(key=lambda p: p.played_at_ms)
    # Sessions can overlap in time; a person plays one song at a time, so keep the first.
    out: list[Play] = []
    for p in plays:
        if not out or p.played_at_ms - out[-1].played_at_ms >= MIN_REPORTED_MS:
            out.append(p)
    return tuple(out)


def _local_day(ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, tz).date()


def plays_between(seed: int, user: DemoUser, start_ms: int, end_ms: int) -> list[Play]:
    """Plays with start_ms < played_at <= end_ms, oldest first. Stable for any window."""
    tz = ZoneInfo(user.time_zone)
    day = _local_day(start_ms, tz) - timedelta(days=1)  # sessions can end after midnight
    last = _local_day(end_ms, tz)
    out: list[Play] = []
    while day <= last:
        out.extend(p for p in _day_plays_cached(seed, user, day) if start_ms < p.played_at_ms <= end_ms)
        day += timedelta(days=1)
    out.sort(key=lambda p: p.played_at_ms)
    return out


def latest_plays(seed: int, user: DemoUser, now_ms: int, n: int = 50, max_days: int = 60) -> list[Play]:
    """The `n` most recent plays finished at or before `now_ms`, newest first."""
    tz = ZoneInfo(user.time_zone)
    day = _local_day(now_ms, tz) + timedelta(days=1)
    found: list[Play] = []
    enough_at = None
    for i in range(max_days):
        found.extend(p for p in _day_plays_cached(seed, user, day) if p.played_at_ms <= now_ms)
        if enough_at is None and len(found) >= n:
            enough_at = i
        # One more day once there are enough: a late session of the day before can end after midnight.
        if enough_at is not None and i > enough_at:
            break
        day -= timedelta(days=1)
    found.sort(key=lambda p: p.played_at_ms, reverse=True)
    return found[:n]


def iso_ms(ms: int) -> str:
    """Spotify's `played_at` format: ISO 8601 UTC with milliseconds and 'Z'."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
