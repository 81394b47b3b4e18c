"""Synthetic listening history at scale, for benchmarks: `wrapped generate`.

Fills raw.plays and the entity tables (raw.artists, raw.albums, raw.tracks, app.users) of a
warehouse by COPY, deterministically: the same arguments (and --seed) give the same rows.
The shapes are meant to look like real listening, so the dbt models do realistic work:
- a catalogue whose artists and tracks are played Zipf-like (a few hits, a long tail);
- listeners of unequal appetite (log-normal), each in an IANA time zone, listening in
  sessions (back-to-back plays, each ending one track length after the previous one) at
  local hours that follow a daily rhythm, more at weekends;
- each listener's taste: life-long favourites plus a quarter-by-quarter "era" of tracks,
  so discoveries keep happening;
- the older half of the history is a privacy-export import (ms_played known, skips among
  it), the rest polled from the API (ms_played null), loaded a few seconds after the play.

    wrapped generate --plays 10000000 --listeners 1000 --years 2
    wrapped generate --plays 600 --listeners 1000 --start 2026-12-01T00:00Z --hours 1 --append

`--append` adds plays only (the entity tables must be there): "one more hour" for the
incremental dbt benchmark, whose rows are loaded now, as a poll would load them.
"""

from __future__ import annotations

import bisect
import io
import itertools
import math
import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator, Sequence
from zoneinfo import ZoneInfo

import psycopg2

# (zone, weight): where the synthetic listeners live.
TIME_ZONES = (
    ("Europe/Berlin", 14), ("Europe/London", 10), ("America/New_York", 12), ("America/Chicago", 6),
    ("America/Los_Angeles", 8), ("America/Sao_Paulo", 8), ("Asia/Tokyo", 6), ("Asia/Kolkata", 6),
    ("Australia/Sydney", 4), ("Europe/Madrid", 5), ("Africa/Lagos", 3), ("Asia/Jakarta", 4),
    ("America/Mexico_City", 5), ("Pacific/Auckland", 2), ("Asia/Kathmandu", 1), ("UTC", 6),
)
# Share of a day's sessions starting at each local hour (0..23): quiet nights, a commute,
# an afternoon, and an evening peak.
HOUR_WEIGHTS = (2, 1, 1, 1, 1, 2, 4, 8, 10, 8, 6, 6, 7, 6, 6, 7, 8, 10, 11, 12, 12, 10, 7, 4)
WEEKDAY_FACTOR = (0.9, 0.9, 0.95, 1.0, 1.1, 1.25, 1.2)  # Monday .. Sunday
GENRES = (
    "pop", "rock", "indie", "hip hop", "rap", "r&b", "soul", "jazz", "blues", "classical", "electronic",
    "house", "techno", "ambient", "folk", "country", "metal", "punk", "reggae", "latin", "k-pop",
    "afrobeats", "funk", "disco", "grunge", "shoegaze", "trap", "drum and bass", "singer-songwriter", "lo-fi",
)
ZIPF_EXPONENT = 1.07
SKIP_SHARE = 0.12          # of exported rows: played under 30 s (skip events)
FAVOURITE_SHARE = 0.55     # of plays: from the listener's life-long favourites, else the era's tracks
ERA_DAYS = 91
COPY_CHUNK_ROWS = 200_000


@dataclass(frozen=True)
class Shape:
    plays: int
    listeners: int
    start: datetime        # first instant of the history (UTC)
    end: datetime          # plays end before this instant
    seed: int = 13
    export_until: datetime | None = None   # plays before it came from a privacy export
    loaded_at: datetime | None = None      # every row's load time (None: a few s after the play)

    @property
    def artists(self) -> int:
        return max(50, self.listeners * 20)


@dataclass(frozen=True)
class Catalogue:
    artist_ids: list[str]
    track_ids: list[str]
    track_artist: list[int]         # artist index of each track
    track_duration_ms: list[int]
    tracks_of_artist: list[range]   # track indexes of each artist
    artist_cum_weights: list[float]  # Zipf over artists (index 0 most popular)


def zipf_cum_weights(n: int, exponent: float = ZIPF_EXPONENT) -> list[float]:
    return list(itertools.accumulate(1.0 / (rank ** exponent) for rank in range(1, n + 1)))


def build_catalogue(artists: int, seed: int) -> Catalogue:
    rng = random.Random(f"{seed}-catalogue")
    artist_ids, track_ids, track_artist, durations, tracks_of_artist = [], [], [], [], []
    for a in range(artists):
        artist_ids.append(f"genartist{a:07d}")
        first = len(track_ids)
        # popular artists have bigger catalogues
        count = 6 + rng.randrange(6) + (30 if a < artists // 50 else 0)
        for _ in range(count):
            track_ids.append(f"gentrack{len(track_ids):09d}")
            track_artist.append(a)
            durations.append(int(rng.triangular(95_000, 420_000, 205_000)))
        tracks_of_artist.append(range(first, len(track_ids)))
    return Catalogue(artist_ids, track_ids, track_artist, durations, tracks_of_artist, zipf_cum_weights(artists))


def _albums_of(catalogue: Catalogue) -> Iterator[tuple[int, list[int]]]:
    """(album number, track indexes): each artist's tracks cut into albums of up to 12."""
    number = 0
    for artist_tracks in catalogue.tracks_of_artist:
        for first in range(artist_tracks.start, artist_tracks.stop, 12):
            yield number, list(range(first, min(first + 12, artist_tracks.stop)))
            number += 1


def _copy(cur, table: str, columns: Sequence[str], lines: Sequence[str]) -> None:
    cur.copy_expert(f"copy {table} ({', '.join(columns)}) from stdin", io.StringIO("".join(lines)))


def _pg_array(values: Sequence[str]) -> str:
    return "{" + ",".join('"' + v + '"' for v in values) + "}"


def write_entities(cur, shape: Shape, catalogue: Catalogue, zones: list[str]) -> None:
    """raw.artists, raw.albums, raw.tracks and app.users (as the metadata fetch and onboarding leave them).

    Loaded when fetched, at the history's start (not now): a build after one more hour sees
    only the hour's plays as new, as it would have in the pipeline."""
    rng = random.Random(f"{shape.seed}-entities")
    fetched = shape.start.isoformat()
    lines = []
    for a, artist_id in enumerate(catalogue.artist_ids):
        genres = rng.sample(GENRES, 1 + rng.randrange(3))
        popularity = max(1, 90 - int(12 * math.log1p(a)))
        lines.append(f"{artist_id}\tArtist {a}\t{_pg_array(genres)}\t{popularity}\t{rng.randrange(10**7)}\t{fetched}\t{fetched}\n")
    _copy(cur, "raw.artists", ("artist_id", "name", "genres", "popularity", "followers", "fetched_at", "loaded_at"),
          lines)

    album_lines, track_lines = [], []
    for album, tracks in _albums_of(catalogue):
        album_id = f"genalbum{album:08d}"
        artist_id = catalogue.artist_ids[catalogue.track_artist[tracks[0]]]
        released = (shape.start - timedelta(days=rng.randrange(3650))).date().isoformat()
        kind = "album" if len(tracks) > 4 else "single"
        album_lines.append(f"{album_id}\tAlbum {album}\t{kind}\t{released}\tday\t{_pg_array([artist_id])}\t\\N\t{fetched}\t{fetched}\n")
        for number, t in enumerate(tracks, start=1):
            track_lines.append(
                f"{catalogue.track_ids[t]}\tTrack {t}\t{catalogue.track_duration_ms[t]}\t{'t' if t % 7 == 0 else 'f'}\t"
                f"{rng.randrange(100)}\t{album_id}\t{_pg_array([artist_id])}\t{number}\t{fetched}\t{fetched}\n"
            )
    _copy(cur, "raw.albums", ("album_id", "name", "album_type", "release_date", "release_date_precision",
                              "artist_ids", "image_url", "fetched_at", "loaded_at"), album_lines)
    _copy(cur, "raw.tracks", ("track_id", "name", "duration_ms", "explicit", "popularity", "album_id",
                              "artist_ids", "track_number", "fetched_at", "loaded_at"), track_lines)

    user_lines = [
        f"{listener_id(u)}\tListener {u}\t{listener_id(u)}@example.com\t{zones[u]}\t{fetched}\tactive\n"
        for u in range(shape.listeners)
    ]
    _copy(cur, "app.users", ("user_id", "display_name", "email", "time_zone", "consent_at", "status"), user_lines)


def listener_id(u: int) -> str:
    return f"listener-{u:04d}"


def listener_zones(shape: Shape) -> list[str]:
    rng = random.Random(f"{shape.seed}-zones")
    names = [zone for zone, _ in TIME_ZONES]
    weights = [weight for _, weight in TIME_ZONES]
    return rng.choices(names, weights=weights, k=shape.listeners)


def listener_plays(shape: Shape) -> list[int]:
    """How many plays each listener gets: log-normal appetites, summing to exactly shape.plays."""
    rng = random.Random(f"{shape.seed}-appetite")
    appetite = [rng.lognormvariate(0, 0.7) for _ in range(shape.listeners)]
    return _allocate(shape.plays, appetite)


class Taste:
    """One listener's tracks: favourites for life plus an era's tracks, each Zipf-weighted."""

    SIZE = 400

    def __init__(self, catalogue: Catalogue, rng: random.Random):
        self.catalogue = catalogue
        self.rng = rng
        self.cum_weights = zipf_cum_weights(self.SIZE)
        self.favourites = self._pick_tracks()
        self.eras: dict[int, list[int]] = {}

    def _pick_tracks(self) -> list[int]:
        c = self.catalogue
        artists = self.rng.choices(range(len(c.artist_ids)), cum_weights=c.artist_cum_weights, k=self.SIZE)
        return [self.rng.choice(c.tracks_of_artist[a]) for a in artists]

    def tracks(self, era: int, k: int) -> list[int]:
        if era not in self.eras:
            self.eras[era] = self._pick_tracks()
        chosen = []
        for _ in range(k):
            pool = self.favourites if self.rng.random() < FAVOURITE_SHARE else self.eras[era]
            chosen.append(pool[bisect.bisect(self.cum_weights, self.rng.random() * self.cum_weights[-1])])
        return chosen



def play_rows(shape: Shape, catalogue: Catalogue, u: int, count: int, zone: str) -> list[str]:
    """COPY lines of one listener's `count` plays, in time order.

    The plays are cut into days (weekday factor times a day-to-day mood) and each day into
    sessions starting at local hours of HOUR_WEIGHTS. Sessions are laid out from the last
    backwards, each ending before the next one starts and the last before shape.end, so
    plays never overlap and exactly `count` of them fit. A window under a day (--hours) is
    one session per listener, ending somewhere inside it.
    """
    rng = random.Random(f"{shape.seed}-listener-{u}")
    taste = Taste(catalogue, rng)
    tz = ZoneInfo(zone)
    start_s, end_s = shape.start.timestamp(), shape.end.timestamp()
    window_s = end_s - start_s
    sessions = []  # (local day start or None, hour, plays, era), in time order
    if window_s < 86400:
        sessions.append((None, 0, count, 0))
    else:
        days = math.ceil(window_s / 86400)
        first_day = shape.start.date()
        weights = [WEEKDAY_FACTOR[(first_day + timedelta(days=d)).weekday()] * rng.lognormvariate(0, 0.5)
                   for d in range(days)]
        for d, day_plays in enumerate(_allocate(count, weights)):
            if day_plays == 0:
                continue
            day_start = datetime.combine(first_day + timedelta(days=d), datetime.min.time(), tz).timestamp()
            parts = 1 + min(3, day_plays // 12)
            hours = sorted(rng.choices(range(24), weights=HOUR_WEIGHTS, k=parts))
            era = int((day_start - start_s) // (ERA_DAYS * 86400))
            for hour, size in zip(hours, _split(day_plays, parts, rng)):
                if size:
                    sessions.append((day_start, hour, size, era))

    user = listener_id(u)
    export_until_s = shape.export_until.timestamp() if shape.export_until else -math.inf
    lines: list[str] = []
    next_start = end_s
    for day_start, hour, size, era in reversed(sessions):
        tracks = taste.tracks(era, size)
        if day_start is None:
            # room for the session's plays after the window's start (none begins before it)
            lead = min(window_s, sum(catalogue.track_duration_ms[t] for t in tracks) / 1000 + 3 * size)
            at = start_s + lead + rng.random() * (window_s - lead)
        else:
            at = day_start + hour * 3600 + rng.random() * 3600
        at = min(at, next_start - 1)
        context = f"spotify:playlist:gen{u:04d}{hour:02d}"
        for t in tracks:
            duration_ms = catalogue.track_duration_ms[t]
            if at < export_until_s:
                ms_played = rng.randrange(1_000, 30_000) if rng.random() < SKIP_SHARE else duration_ms
                lines.append(f"{user}\t{at:.3f}\t{catalogue.track_ids[t]}\t\\N\texport\t{ms_played}\n")
            else:
                ms_played = duration_ms
                lines.append(f"{user}\t{at:.3f}\t{catalogue.track_ids[t]}\t{context}\tapi\t\\N\n")
            # played_at is the END of a play: the one before ended before this one started
            at -= ms_played / 1000 + 1 + rng.random() * 2
        next_start = at
    lines.reverse()
    return lines


def _allocate(total: int, weights: Sequence[float]) -> list[int]:
    """`total` split in proportion to `weights`, in whole numbers summing to exactly `total`."""
    scale = total / sum(weights)
    shares = [w * scale for w in weights]
    counts = [int(s) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: counts[i] - shares[i])
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    cuts = sorted(rng.randrange(total + 1) for _ in range(parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total])]


# Python writes each play's end as epoch seconds (formatting timestamps in Python would be
# most of the generator's time); Postgres turns them into raw.plays rows, chunk by chunk.
STAGING_TABLE = """
    create temporary table generated_plays (
        user_id     text,
        played_at_s double precision,
        track_id    text,
        context_uri text,
        source      text,
        ms_played   bigint
    ) on commit drop
"""
# Exported rows were loaded when the export was imported; polled ones a few seconds after the
# play; an --append run's rows now (%(loaded_at)s), as the consumer would.
MOVE_STAGED_PLAYS = """
    insert into raw.plays (user_id, played_at, track_id, context_uri, source, ms_played, ingested_at, loaded_at)
    select
        user_id,
        to_timestamp(played_at_s),
        track_id,
        context_uri,
        source,
        ms_played,
        coalesce(%(loaded_at)s, case when source = 'export' then %(export_until)s
                                     else to_timestamp(played_at_s) + interval '2 seconds' end),
        coalesce(%(loaded_at)s, case when source = 'export' then %(export_until)s
                                     else to_timestamp(played_at_s) + interval '9 seconds' end)
    from generated_plays;
    truncate generated_plays;
"""


def generate(dsn: str, shape: Shape, *, append: bool = False, progress: Callable[[str], None] = print) -> int:
    """Write the shape's rows into the warehouse at `dsn` (schema.sql applied); returns plays written.

    Without `append` the entity tables are written too (they must not hold these ids yet).
    One transaction: a failed run leaves nothing behind.
    """
    started = time.monotonic()
    catalogue = build_catalogue(shape.artists, shape.seed)
    zones = listener_zones(shape)
    counts = listener_plays(shape)
    times = {"loaded_at": shape.loaded_at, "export_until": shape.export_until}
    conn = psycopg2.connect(dsn)
    written = 0
    try:
        with conn, conn.cursor() as cur:
            cur.execute("set local synchronous_commit = off")
            cur.execute(STAGING_TABLE)
            if not append:
                write_entities(cur, shape, catalogue, zones)
                progress(f"entities: {len(catalogue.artist_ids):,} artists, {len(catalogue.track_ids):,} tracks, "
                         f"{shape.listeners:,} listeners ({time.monotonic() - started:.0f}s)")
            lines: list[str] = []
            next_report = shape.plays // 10
            for u in range(shape.listeners):
                lines.extend(play_rows(shape, catalogue, u, counts[u], zones[u]))
                if len(lines) >= COPY_CHUNK_ROWS or u == shape.listeners - 1:
                    _copy(cur, "generated_plays", ("user_id", "played_at_s", "track_id", "context_uri", "source",
                                                   "ms_played"), lines)
                    cur.execute(MOVE_STAGED_PLAYS, times)
                    written += len(lines)
                    lines = []
                    if written >= next_report:
                        elapsed = time.monotonic() - started
                        progress(f"plays: {written:,} of {shape.plays:,} ({elapsed:.0f}s, "
                                 f"{written / max(elapsed, 1e-9):,.0f}/s)")
                        next_report = written + shape.plays // 10
            cur.execute("analyze raw.plays")
    finally:
        conn.close()
    return written


def parse_instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def current_hour() -> datetime:
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def main(args, dsn: str) -> int:
    """`wrapped generate` (arguments parsed by the CLI)."""
    if args.hours:
        start = parse_instant(args.start) if args.start else current_hour()
        end = start + timedelta(hours=args.hours)
    else:
        end = parse_instant(args.end) if args.end else current_hour()
        start = end - timedelta(days=round(365 * args.years))
    shape = Shape(
        plays=args.plays,
        listeners=args.listeners,
        start=start,
        end=end,
        seed=args.seed,
        export_until=None if args.append else start + (end - start) / 2,
        loaded_at=datetime.now(timezone.utc) if args.append else None,
    )
    print(f"Generating {shape.plays:,} plays of {shape.listeners:,} listeners, {start:%Y-%m-%d %H:%M} to "
          f"{end:%Y-%m-%d %H:%M} UTC (seed {shape.seed})", flush=True)
    written = generate(dsn, shape, append=args.append, progress=lambda line: print(line, flush=True))
    print(f"done: {written:,} plays", flush=True)
    return 0


def add_arguments(parser) -> None:
    parser.add_argument("--plays", type=int, default=10_000_000, help="plays in all (default 10,000,000)")
    parser.add_argument("--listeners", type=int, default=1000, help="listeners (default 1,000)")
    parser.add_argument("--years", type=float, default=2, help="history length (default 2)")
    parser.add_argument("--end", metavar="ISO", help="the history ends here (default: this hour's start, UTC)")
    parser.add_argument("--hours", type=float, help="instead of --years: this many hours from --start")
    parser.add_argument("--start", metavar="ISO", help="with --hours: where they start (default: this hour)")
    parser.add_argument("--seed", type=int, default=13, help="same seed and arguments, same rows")
    parser.add_argument("--append", action="store_true",
                        help="plays only, for listeners and tracks already generated; loaded now")


if __name__ == "__main__":
    sys.exit("use `wrapped generate`")
