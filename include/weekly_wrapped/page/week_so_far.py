"""The week so far, in the listener's time zone: Monday 00:00 local until now, and last week
until the same local weekday and time. I/O edge (reads Postgres) around pure summing.

Fresh within minutes of a poll: the plays come from the marts (`marts.fct_plays`, what dbt has
built) plus the rows of `raw.plays` that arrived since and are not in the marts yet. The
numbers follow docs/recap.md exactly as the marts compute them:
- minutes: `ms_played` when known, else the track's length, else 3.5 min; either capped by the
  time since the previous play ended (`played_at` is the END of a play);
- copies of one play (same track, within 30 s; an account-data row within 60 s before its
  copy) are one play, and skip events (ms_played under 30 s) are not plays;
- top lists rank only what is known (a track, artist or album whose metadata has not arrived
  is left out) and `plays_pending_metadata` says how many plays wait for theirs;
- a play counts on the local day and hour it ended.
Metadata comes from the marts' dimensions, or from raw.tracks/albums/artists for what arrived
after the last build.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from weekly_wrapped import db
from weekly_wrapped.recap.facts import valid_time_zone

UTC = timezone.utc
MIN_PLAY_MS = 30_000  # dbt var('min_play_ms'), contracts.MIN_PLAY_MS
ESTIMATED_PLAY_MS = 210_000  # dbt var('estimated_play_ms'): 3.5 min when nothing says how long
SAME_PLAY_WITHIN = timedelta(seconds=30)
ACCOUNT_DATA_COPY_WITHIN = timedelta(seconds=60)
TOP_N = 5
SOURCE_ORDER = {"api": 1, "demo": 2, "export": 3}
# fct_plays reloads what changed in the hour before its newest row (late commits): rows loaded
# that recently may or may not be in the marts, so they are checked against them.
BUILD_OVERLAP = timedelta(hours=1)


# ---------------------------------------------------------------- what the page shows

@dataclass(frozen=True)
class TopItem:
    rank: int
    id: str
    name: str
    artists: str | None  # the credited artists' names (tracks, albums), known ones only
    plays: int
    minutes: Decimal
    image_url: str | None
    spotify_url: str | None  # None for an item known only by the names an export gave


@dataclass(frozen=True)
class WeekFigures:
    """One stretch of listening: [start, end) in UTC, local to the listener."""

    start: datetime
    end: datetime
    plays: int
    minutes: Decimal  # rounded to 0.1, half up (as the marts)
    plays_estimated_minutes: int  # plays whose ms_played is not known
    plays_pending_metadata: int  # plays whose track is still being looked up
    top_artists: list[TopItem]
    top_tracks: list[TopItem]
    top_albums: list[TopItem]
    minutes_by_day: list[dict]  # 7 x {"date", "minutes"}, Monday first
    listening_clock: list[list[Decimal]]  # 7 weekdays (Monday first) x 24 local hours


@dataclass(frozen=True)
class WeekSoFar:
    user_id: str
    time_zone: str
    week_start: date  # this local Monday
    now: datetime
    this_week: WeekFigures  # Monday 00:00 local .. now
    last_week: WeekFigures  # last Monday 00:00 local .. the same local weekday and time
    # how last week compares (docs/recap.md's previous_week_status, for the part up to now):
    # compared / no_plays / partial (history starts in it, or an ingest gap overlaps it) / not_known
    compared: str
    history_known_since: datetime | None  # the earliest play (or skip) held
    as_of: datetime | None  # the newest play held (up to now)
    built_through: datetime | None  # the newest load the marts hold (None: no dbt build yet)
    plays_since_build: int  # plays counted here that the marts do not hold yet
    based_on: str = field(default="")  # one sentence for the page

    @property
    def minutes_change(self) -> Decimal | None:
        if self.compared not in ("compared", "no_plays"):
            return None
        return self.this_week.minutes - self.last_week.minutes

    @property
    def plays_change(self) -> int | None:
        if self.compared not in ("compared", "no_plays"):
            return None
        return self.this_week.plays - self.last_week.plays


# ---------------------------------------------------------------- pure parts

@dataclass
class Play:
    played_at: datetime  # END of the play, UTC
    track_id: str
    ms_played: int | None
    from_marts: bool = True
    account_data: bool = False  # an export's account-data row: played_at truncated to the minute
    source: str = "api"  # api / demo / export: of copies of one play, fct_plays keeps them in this order


@dataclass(frozen=True)
class Catalogue:
    """What is known about the tracks played: each dict keyed by id; only known items present."""

    tracks: dict[str, dict]  # {"name", "duration_ms", "album_id", "artist_ids" (in credit order)}
    albums: dict[str, dict]  # {"name", "artists" (names), "image_url"}
    artists: dict[str, dict]  # {"name", "image_url"}
    durations: dict[str, int | None]  # every track id's length when known (also of unknown tracks)


def round_minutes(ms: int) -> Decimal:
    return (Decimal(ms) / 60000).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def local_monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def same_point_last_week(now: datetime, zone: ZoneInfo) -> datetime:
    """Now's local weekday and wall-clock time, a week before (DST-correct: a wall-clock week)."""
    local = now.astimezone(zone)
    wall = local.replace(tzinfo=None) - timedelta(days=7)
    return wall.replace(tzinfo=zone, fold=local.fold).astimezone(UTC)


def listened_ms(plays: list[Play], previous_end: datetime | None, durations: dict[str, int | None]) -> list[int]:
    """Each play's listened time (plays sorted by played_at, track_id; `previous_end`: the play before them)."""
    result = []
    for play in plays:
        ms = play.ms_played if play.ms_played is not None else (durations.get(play.track_id) or ESTIMATED_PLAY_MS)
        if previous_end is not None:
            gap_ms = round((play.played_at - previous_end) / timedelta(milliseconds=1))
            ms = min(ms, gap_ms)
        result.append(ms)
        previous_end = play.played_at
    return result


def _spotify_url(kind: str, item_id: str) -> str | None:
    return None if item_id.startswith("name:") else f"https://open.spotify.com/{kind}/{item_id}"


def _top(totals: dict[str, list[int]], describe, kind: str) -> list[TopItem]:
    """Rank {id: [plays, ms]}: more plays, then more time, then name, then id; the first five."""
    rows = [(describe(item_id), item_id, plays, ms) for item_id, (plays, ms) in totals.items()]
    rows.sort(key=lambda r: (-r[2], -r[3], r[0]["name"], r[1]))
    return [
        TopItem(rank, item_id, about["name"], about.get("artists"), plays, round_minutes(ms),
                about.get("image_url"), _spotify_url(kind, item_id))
        for rank, (about, item_id, plays, ms) in enumerate(rows[:TOP_N], start=1)
    ]


def summarize(plays_with_ms: list[tuple[Play, int]], start: datetime, end: datetime, zone: ZoneInfo,
              catalogue: Catalogue) -> WeekFigures:
    """The figures of the plays that ended in [start, end) (UTC); `start` is a local Monday 00:00."""
    monday = start.astimezone(zone).date()
    days = [monday + timedelta(days=i) for i in range(7)]
    day_ms = defaultdict(int)
    clock_ms = defaultdict(int)
    tracks, artists, albums = defaultdict(lambda: [0, 0]), defaultdict(lambda: [0, 0]), defaultdict(lambda: [0, 0])
    plays = total_ms = estimated = pending = 0
    for play, ms in plays_with_ms:
        if not (start <= play.played_at < end):
            continue
        plays += 1
        total_ms += ms
        estimated += play.ms_played is None
        local = play.played_at.astimezone(zone)
        day_ms[local.date()] += ms
        clock_ms[(local.date(), local.hour)] += ms
        track = catalogue.tracks.get(play.track_id)
        if track is None:
            pending += 1
            continue
        tracks[play.track_id][0] += 1
        tracks[play.track_id][1] += ms
        if track["album_id"] in catalogue.albums:
            albums[track["album_id"]][0] += 1
            albums[track["album_id"]][1] += ms
        for artist_id in dict.fromkeys(track["artist_ids"]):
            if artist_id in catalogue.artists:
                artists[artist_id][0] += 1
                artists[artist_id][1] += ms

    def describe_track(track_id):
        track = catalogue.tracks[track_id]
        album = catalogue.albums.get(track["album_id"]) or {}
        names = [catalogue.artists[a]["name"] for a in track["artist_ids"] if a in catalogue.artists]
        return {"name": track["name"], "artists": ", ".join(names) or None, "image_url": album.get("image_url")}

    return WeekFigures(
        start=start,
        end=end,
        plays=plays,
        minutes=round_minutes(total_ms),
        plays_estimated_minutes=estimated,
        plays_pending_metadata=pending,
        top_artists=_top(artists, lambda a: {"name": catalogue.artists[a]["name"], "artists": None,
                                             "image_url": catalogue.artists[a]["image_url"]}, "artist"),
        top_tracks=_top(tracks, describe_track, "track"),
        top_albums=_top(albums, lambda a: catalogue.albums[a], "album"),
        minutes_by_day=[{"date": day, "minutes": round_minutes(day_ms[day])} for day in days],
        listening_clock=[[round_minutes(clock_ms[(day, hour)]) for hour in range(24)] for day in days],
    )


def merge_new_rows(built: list[Play], new_rows: list[Play]) -> list[Play]:
    """The marts' plays plus raw rows they do not hold yet, each play once (fct_plays' rules:
    skip events are not plays; a row within 30 s of a play of the same track is a copy of it;
    an account-data row, minute-truncated, is a copy of the row up to 60 s after it)."""
    by_track: dict[str, list[Play]] = defaultdict(list)
    for play in built:
        by_track[play.track_id].append(play)
    for row in sorted(new_rows, key=lambda p: (SOURCE_ORDER.get(p.source, 4), p.played_at, p.track_id)):
        if row.ms_played is not None and row.ms_played < MIN_PLAY_MS:
            continue
        copy_of = next((p for p in by_track[row.track_id] if _same_play(p, row)), None)
        if copy_of is None:
            by_track[row.track_id].append(row)
        elif copy_of.ms_played is None and row.ms_played is not None:
            copy_of.ms_played = row.ms_played  # a copy that knows ms_played (as the cluster's max)
    return sorted((p for plays in by_track.values() for p in plays), key=lambda p: (p.played_at, p.track_id))


def _same_play(a: Play, b: Play) -> bool:
    first, second = sorted([a, b], key=lambda p: p.played_at)
    apart = second.played_at - first.played_at
    if apart <= SAME_PLAY_WITHIN:
        return True
    return first.account_data and not second.account_data and apart < ACCOUNT_DATA_COPY_WITHIN


def compared_status(last_start: datetime, last_end: datetime, history_known_since: datetime | None,
                    gaps: list[tuple[datetime, datetime]], last_week_plays: int) -> str:
    if history_known_since is None or history_known_since >= last_end:
        return "not_known"
    if history_known_since > last_start or any(g_from < last_end and g_to > last_start for g_from, g_to in gaps):
        return "partial"
    return "compared" if last_week_plays else "no_plays"


# ---------------------------------------------------------------- reading Postgres

MARTS_BUILT_SQL = "select to_regclass('marts.fct_plays') is not null and to_regclass('marts.dim_track') is not null"

RAW_ROWS_SQL = """
select p.played_at, coalesce(r.track_id, p.track_id), p.ms_played, p.source,
       p.source = 'export' and p.track_id like 'name:track:%%'
           and p.played_at = date_trunc('minute', p.played_at) as account_data
from raw.plays p
left join app.track_resolutions r on r.name_key = p.track_id and r.status = 'resolved'
where p.user_id = %s and p.played_at >= %s and p.played_at < %s and p.loaded_at > %s
"""


def _durations(cur, track_ids: list[str], marts_built: bool) -> dict[str, int | None]:
    """Each track's length when known (the marts', else raw.tracks' for one fetched since the build)."""
    durations = {}
    if marts_built:
        cur.execute("select track_id, duration_ms from marts.dim_track where track_id = any(%s) and has_metadata",
                    (track_ids,))
        durations = dict(cur.fetchall())
    missing = [t for t in track_ids if t not in durations]
    if missing:
        cur.execute("select track_id, duration_ms from raw.tracks where track_id = any(%s)", (missing,))
        durations.update(cur.fetchall())
    return durations


def current_week_totals(cur, user_id: str, zone: ZoneInfo, now: datetime) -> tuple[int, Decimal]:
    """(plays, minutes) of this local week until now: the week so far's figures, without the rest."""
    now = now.astimezone(UTC)
    start = local_midnight(local_monday(now.astimezone(zone).date()), zone)
    plays, previous_end, built_through = read_plays(cur, user_id, start, now + timedelta(microseconds=1))
    durations = _durations(cur, sorted({p.track_id for p in plays}), built_through is not None)
    return len(plays), round_minutes(sum(listened_ms(plays, previous_end, durations)))


def _catalogue(cur, track_ids: list[str], marts_built: bool) -> Catalogue:
    tracks, albums, artists, durations = {}, {}, {}, {}
    if marts_built:
        cur.execute("""
            select t.track_id, t.track_name, t.duration_ms, t.album_id, t.has_metadata,
                   coalesce(array_agg(b.artist_id order by b.artist_position)
                            filter (where b.artist_id is not null), '{}')
            from marts.dim_track t left join marts.bridge_track_artist b on b.track_id = t.track_id
            where t.track_id = any(%s)
            group by 1, 2, 3, 4, 5""", (track_ids,))
        for track_id, name, duration_ms, album_id, known, artist_ids in cur.fetchall():
            durations[track_id] = duration_ms
            if known:
                tracks[track_id] = {"name": name, "duration_ms": duration_ms, "album_id": album_id,
                                    "artist_ids": list(artist_ids)}
    missing = [t for t in track_ids if t not in tracks]
    if missing:  # arrived after the last build
        cur.execute("select track_id, name, duration_ms, album_id, coalesce(artist_ids, '{}') from raw.tracks"
                    " where track_id = any(%s)", (missing,))
        for track_id, name, duration_ms, album_id, artist_ids in cur.fetchall():
            durations[track_id] = duration_ms
            tracks[track_id] = {"name": name, "duration_ms": duration_ms, "album_id": album_id,
                                "artist_ids": list(artist_ids)}
    album_ids = sorted({t["album_id"] for t in tracks.values() if t["album_id"]})
    artist_ids = sorted({a for t in tracks.values() for a in t["artist_ids"]})
    if marts_built:
        cur.execute("select album_id, album_name, artist_names, image_url from marts.dim_album"
                    " where album_id = any(%s) and has_metadata", (album_ids,))
        albums = {a: {"name": n, "artists": names, "image_url": img} for a, n, names, img in cur.fetchall()}
        cur.execute("select artist_id, artist_name, image_url from marts.dim_artist"
                    " where artist_id = any(%s) and has_metadata", (artist_ids,))
        artists = {a: {"name": n, "image_url": img} for a, n, img in cur.fetchall()}
    missing_artists = [a for a in artist_ids if a not in artists]
    if missing_artists:
        cur.execute("select artist_id, name, image_url from raw.artists where artist_id = any(%s)", (missing_artists,))
        artists.update({a: {"name": n, "image_url": img} for a, n, img in cur.fetchall()})
    missing_albums = [a for a in album_ids if a not in albums]
    if missing_albums:
        cur.execute("select album_id, name, coalesce(artist_ids, '{}'), image_url from raw.albums"
                    " where album_id = any(%s)", (missing_albums,))
        for album_id, name, album_artists, image_url in cur.fetchall():
            names = [artists[a]["name"] for a in album_artists if a in artists]
            albums[album_id] = {"name": name, "artists": ", ".join(names) or None, "image_url": image_url}
    return Catalogue(tracks, albums, artists, durations)


def time_zone_of(cur, user_id: str) -> str:
    cur.execute("select time_zone from app.users where user_id = %s", (user_id,))
    row = cur.fetchone()
    if row is None:
        raise LookupError(f"no user {user_id!r}")
    return valid_time_zone(row[0])  # an unknown name counts as UTC, as in the marts (stg_app__users)


def read_plays(cur, user_id: str, start: datetime, end: datetime) -> tuple[list[Play], datetime | None, datetime | None]:
    """The user's plays that ended in [start, end): the marts' plus raw rows that arrived since
    the last build (from_marts false); also the end of the play before `start` and the marts'
    newest load (None: no dbt build yet)."""
    cur.execute(MARTS_BUILT_SQL)
    marts_built = cur.fetchone()[0]
    # from a minute before `start`: a raw row there may be a copy of a play in the window (or
    # of the one before it), and the play before the window caps the first one's minutes
    # and until a minute after `end`: a copy there tells a play's ms_played, or which copy is kept
    since_start, until = start - ACCOUNT_DATA_COPY_WITHIN, end + ACCOUNT_DATA_COPY_WITHIN
    built, previous_end, built_through = [], None, None
    if marts_built:
        cur.execute("select played_at, track_id, ms_played from marts.fct_plays"
                    " where user_id = %s and played_at >= %s and played_at < %s", (user_id, since_start, until))
        built = [Play(at, track, ms) for at, track, ms in cur.fetchall()]
        cur.execute("select max(played_at) from marts.fct_plays where user_id = %s and played_at < %s",
                    (user_id, since_start))
        previous_end = cur.fetchone()[0]
        cur.execute("select max(loaded_at) from marts.fct_plays")
        built_through = cur.fetchone()[0]
    else:  # no dbt build yet: every raw row is new
        cur.execute("select max(played_at) from raw.plays where user_id = %s and played_at < %s"
                    " and (ms_played is null or ms_played >= %s)", (user_id, since_start, MIN_PLAY_MS))
        previous_end = cur.fetchone()[0]
    since = built_through - BUILD_OVERLAP if built_through else datetime.min.replace(tzinfo=UTC)
    cur.execute(RAW_ROWS_SQL, (user_id, since_start, until, since))
    new_rows = [Play(at, track, ms, from_marts=False, account_data=account_data, source=source)
                for at, track, ms, source, account_data in cur.fetchall()]
    plays = merge_new_rows(built, new_rows)
    before = [p for p in plays if p.played_at < start]
    if before:
        previous_end = before[-1].played_at
    plays = [p for p in plays if start <= p.played_at < end]
    return plays, previous_end, built_through


def week_so_far(dsn: str, user_id: str, now: datetime) -> WeekSoFar:
    """The listener's week until `now` (aware), and last week until the same local point."""
    conn = db.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            return read_week_so_far(cur, user_id, now)
    finally:
        conn.close()


def read_week_so_far(cur, user_id: str, now: datetime) -> WeekSoFar:
    """`week_so_far` on an open cursor (LookupError when there is no such user)."""
    time_zone = time_zone_of(cur, user_id)
    zone = ZoneInfo(time_zone)
    now = now.astimezone(UTC)
    monday = local_monday(now.astimezone(zone).date())
    this_start = local_midnight(monday, zone)
    last_start = local_midnight(monday - timedelta(days=7), zone)
    last_end = same_point_last_week(now, zone)
    # plays ending exactly at `now` count: the window is [start, now]
    window_end = now + timedelta(microseconds=1)

    plays, previous_end, built_through = read_plays(cur, user_id, last_start, window_end)
    catalogue = _catalogue(cur, sorted({p.track_id for p in plays}), built_through is not None)
    with_ms = list(zip(plays, listened_ms(plays, previous_end, catalogue.durations)))
    this_week = summarize(with_ms, this_start, window_end, zone, catalogue)
    last_week = summarize(with_ms, last_start, min(last_end + timedelta(microseconds=1), this_start), zone, catalogue)

    # two queries, each one step down raw.plays' primary key (user_id, played_at, ...)
    cur.execute("select min(played_at) from raw.plays where user_id = %s", (user_id,))
    known_since = cur.fetchone()[0]
    cur.execute("select max(played_at) from raw.plays where user_id = %s and played_at <= %s", (user_id, now))
    as_of = cur.fetchone()[0]
    cur.execute("select gap_from, gap_to from app.ingest_gaps where user_id = %s and gap_to > %s and gap_from < %s",
                (user_id, last_start, last_end))
    gaps = cur.fetchall()
    compared = compared_status(last_start, last_end, known_since, gaps, last_week.plays)
    since_build = sum(1 for p in plays if not p.from_marts and p.played_at >= this_start)
    return WeekSoFar(
        user_id=user_id,
        time_zone=time_zone,
        week_start=monday,
        now=now,
        this_week=this_week,
        last_week=last_week,
        compared=compared,
        history_known_since=known_since,
        as_of=as_of,
        built_through=built_through,
        plays_since_build=since_build,
        based_on=_based_on(this_week, since_build, as_of, zone),
    )


def _based_on(week: WeekFigures, since_build: int, as_of: datetime | None, zone: ZoneInfo) -> str:
    parts = []
    if as_of is not None:
        parts.append(f"Counted up to your newest play we hold, {as_of.astimezone(zone):%a %d %b %H:%M}")
    else:
        parts.append("No plays yet")
    if since_build:
        parts.append(f"{since_build} of this week's plays arrived since the summaries were last built")
    if week.plays_estimated_minutes:
        parts.append(f"minutes of {week.plays_estimated_minutes} plays are estimated (Spotify does not say how long)")
    if week.plays_pending_metadata:
        parts.append(f"{week.plays_pending_metadata} plays wait for their track details and are left out of the top lists")
    return "; ".join(parts) + "."
