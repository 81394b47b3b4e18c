"""The recap's numbers worked out in plain Python from the raw rows, as docs/recap.md defines
them, to check marts.wrapped_weekly against (tests/recap/test_recap_truth.py).

Nothing here reuses the SQL: the history is written as the raw tables hold it (raw.plays with
played_at = the END of a play, raw.tracks/albums/artists, app.ingest_gaps), and `expected_weeks`
recomputes every number from those rows with the standard library.

The listeners (each covers cases the e-mail must tell truly):
- `berlin` (Europe/Berlin): an export import of older weeks, then API polls; the week of
  2026-10-19 has 169 hours (clocks go back on Sunday 10-25, 02:xx happens twice); an export copy
  of a polled play (the same play twice); an ingest gap; plays of a track still being looked up.
- `new_york` (America/New_York): imported only, with ms_played (one longer than the track, one
  overlapping the play before), skip events (under 30 s), a silent week.
- `tokyo` (Asia/Tokyo): API only, a short history (discoveries withheld), the first week's
  previous week not known, a gap making a later previous week partial, overlapping polls.
- `apia` (Pacific/Apia): demo plays around 2011-12-30, the day Samoa skipped: a 144-hour week.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

UTC = dt.timezone.utc
MIN_PLAY_MS = 30_000
ESTIMATED_PLAY_MS = 210_000  # 3.5 min: neither ms_played nor the track's length is known
DISCOVERY_MIN_HISTORY_WEEKS = 8
SOURCE_PRIORITY = {"api": 1, "demo": 2, "export": 3}

USERS = {
    # user_id: IANA time zone
    "berlin": "Europe/Berlin",
    "new_york": "America/New_York",
    "tokyo": "Asia/Tokyo",
    "apia": "Pacific/Apia",
}

NAME_ARTIST = "name:artist:00000000000000000001"  # an artist an export named, not fetched from Spotify
NAME_ALBUM = "name:album:00000000000000000001"

# artist_id: (name, genres, image_url)
ARTISTS = {
    **{
        f"a{i:02d}": (f"Artist {i:02d}", (["ambient", "jazz", "rock"][: i % 4] or None),
                      f"https://i.scdn.co/image/artist{i:02d}" if i % 3 else None)
        for i in range(1, 11)
    },
    NAME_ARTIST: ("Artist Named By Export", None, None),
}
MISSING_ARTIST = "a99"  # credited on a track, never fetched: never shown, never counted

# album_id: (name, artist_ids, image_url)
ALBUMS = {
    **{
        f"al{i:02d}": (f"Album {i:02d}", [f"a{i:02d}"], f"https://i.scdn.co/image/album{i:02d}" if i % 2 else None)
        for i in range(1, 9)
    },
    NAME_ALBUM: ("Album Named By Export", [NAME_ARTIST], None),
}
MISSING_ALBUM = "al99"  # a track points at it, its metadata never came: not ranked

# track_id: (name, duration_ms, album_id, artist_ids)
TRACKS = {
    f"t{i:02d}": (
        f"Track {i:02d}",
        None if i == 13 else 150_000 + 10_000 * (i % 9),
        MISSING_ALBUM if i == 17 else f"al{(i % 8) + 1:02d}",
        [f"a{(i % 10) + 1:02d}"] + ([f"a{((i + 3) % 10) + 1:02d}"] if i % 5 == 0 else [])
        + ([MISSING_ARTIST] if i == 7 else []),
    )
    for i in range(1, 25)
}
TRACKS["t25"] = ("Track 25", 200_000, NAME_ALBUM, [NAME_ARTIST])
PENDING_TRACK = "t_pending"  # played, its metadata not fetched yet


@dataclass
class RawPlay:
    user_id: str
    played_at: dt.datetime  # END of the play, UTC
    track_id: str
    source: str  # api / export / demo
    ms_played: int | None


@dataclass
class History:
    plays: list[RawPlay] = field(default_factory=list)
    gaps: list[tuple[str, dt.datetime, dt.datetime]] = field(default_factory=list)


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def _sessions(rng: random.Random, user_id: str, start: dt.date, end: dt.date, source: str, ms_known: bool,
              tracks: list[str], skip_days: set[dt.date] = frozenset()) -> list[RawPlay]:
    """Listening sessions on most days from start to end (local evenings and mornings): each
    play ends when the track (or less, for a skip) has played after the previous one ended."""
    zone = ZoneInfo(USERS[user_id])
    plays = []
    day = start
    while day <= end:
        if day not in skip_days and rng.random() < 0.8:
            for _ in range(rng.randint(1, 2)):
                local_start = dt.datetime.combine(day, dt.time(rng.choice([7, 8, 12, 18, 21, 23]), rng.randint(0, 50)),
                                                  tzinfo=zone)
                at = local_start.astimezone(UTC)
                for _ in range(rng.randint(1, 6)):
                    track = rng.choice(tracks)
                    length = TRACKS.get(track, (None, None))[1] or ESTIMATED_PLAY_MS
                    listened = length if rng.random() < 0.8 else rng.randint(31_000, length)
                    at = at + dt.timedelta(milliseconds=listened + rng.randint(0, 20_000))
                    at = at.replace(microsecond=0)
                    plays.append(RawPlay(user_id, at, track, source, listened if ms_known else None))
        day += dt.timedelta(days=1)
    return plays


def build_history(seed: int = 2026) -> History:
    rng = random.Random(seed)
    catalogue = sorted(TRACKS)
    history = History()
    add = history.plays.append

    # berlin: exported Aug-Sep (ms_played), polled from October on (no ms_played)
    history.plays += _sessions(rng, "berlin", dt.date(2026, 8, 12), dt.date(2026, 9, 30), "export", True,
                               catalogue[:12])
    history.plays += _sessions(rng, "berlin", dt.date(2026, 10, 1), dt.date(2026, 11, 8), "api", False,
                               catalogue + [PENDING_TRACK])
    # 02:30 twice on Sunday 2026-10-25 (CEST, then CET): one local hour in the clock
    add(RawPlay("berlin", _utc("2026-10-25T02:30:00+02:00"), "t03", "api", None))
    add(RawPlay("berlin", _utc("2026-10-25T02:30:00+01:00"), "t04", "api", None))
    # an export copy of a polled play, 8 s apart: the same play, whose ms_played is now known
    add(RawPlay("berlin", _utc("2026-10-21T20:00:00+02:00"), "t05", "api", None))
    add(RawPlay("berlin", _utc("2026-10-21T20:00:08+02:00"), "t05", "export", 95_000))
    # two polled plays ending 40 s apart: the second lasted at most 40 s
    add(RawPlay("berlin", _utc("2026-10-22T07:00:00+02:00"), "t06", "api", None))
    add(RawPlay("berlin", _utc("2026-10-22T07:00:40+02:00"), "t08", "api", None))
    history.gaps.append(("berlin", _utc("2026-10-28T09:00:00+01:00"), _utc("2026-10-28T15:30:00+01:00")))
    history.gaps.append(("berlin", _utc("2026-10-28T14:00:00+01:00"), _utc("2026-10-28T18:00:00+01:00")))

    # new_york: privacy export only, ms_played known; skips under 30 s
    # (the week of 2026-10-12 silent: the next one compares against no plays)
    history.plays += _sessions(rng, "new_york", dt.date(2026, 9, 3), dt.date(2026, 11, 15), "export", True,
                               catalogue[6:], skip_days={dt.date(2026, 10, 12) + dt.timedelta(days=i) for i in range(7)})
    add(RawPlay("new_york", _utc("2026-11-10T21:00:00-05:00"), "t09", "export", 12_000))  # a skip
    add(RawPlay("new_york", _utc("2026-09-02T10:00:00-04:00"), "t10", "export", 5_000))  # a skip starts the history
    add(RawPlay("new_york", _utc("2026-11-11T22:00:00-05:00"), "t11", "export", 900_000))  # longer than the track
    add(RawPlay("new_york", _utc("2026-11-11T22:01:00-05:00"), "t12", "export", 200_000))  # overlaps: 60 s at most

    # tokyo: a new user, polled only; history from Wednesday 2026-11-04
    history.plays += _sessions(rng, "tokyo", dt.date(2026, 11, 4), dt.date(2026, 11, 29), "api", False,
                               catalogue[::2] + [PENDING_TRACK])
    add(RawPlay("tokyo", _utc("2026-11-20T12:00:00+09:00"), "t13", "api", None))  # no length known: 3.5 min...
    add(RawPlay("tokyo", _utc("2026-11-20T12:02:00+09:00"), "t13", "api", None))  # ... capped at 2 min
    history.gaps.append(("tokyo", _utc("2026-11-18T03:00:00+09:00"), _utc("2026-11-18T09:15:00+09:00")))

    # apia: demo plays (ms_played known) around the day Samoa skipped (2011-12-30)
    history.plays += _sessions(rng, "apia", dt.date(2011, 11, 7), dt.date(2012, 1, 8), "demo", True,
                               catalogue[3:15], skip_days={dt.date(2011, 12, 30)})
    add(RawPlay("apia", _utc("2011-12-29T23:30:00-10:00"), "t14", "demo", 180_000))  # the last Thursday hour
    add(RawPlay("apia", _utc("2011-12-31T00:30:00+14:00"), "t15", "demo", 160_000))  # Saturday, an hour later

    # the primary key of raw.plays: (user_id, played_at, track_id)
    unique = {}
    for play in history.plays:
        unique.setdefault((play.user_id, play.played_at, play.track_id), play)
    history.plays = sorted(unique.values(), key=lambda p: (p.user_id, p.played_at, p.track_id))
    return history


def seed(conn, history: History) -> None:
    """The history as the consumer and the app write it (raw.*, app.users, app.ingest_gaps)."""
    with conn.cursor() as cur:
        for user_id, time_zone in USERS.items():
            cur.execute("insert into app.users (user_id, email, time_zone, display_name, consent_at, email_confirmed_at)"
                        " values (%s, %s, %s, %s, now(), now())", (user_id, f"{user_id}@example.com", time_zone, user_id))
        for artist_id, (name, genres, image_url) in ARTISTS.items():
            cur.execute("insert into raw.artists (artist_id, name, genres, image_url, fetched_at)"
                        " values (%s, %s, %s, %s, now())", (artist_id, name, genres, image_url))
        for album_id, (name, artist_ids, image_url) in ALBUMS.items():
            cur.execute("insert into raw.albums (album_id, name, artist_ids, image_url, fetched_at)"
                        " values (%s, %s, %s, %s, now())", (album_id, name, artist_ids, image_url))
        for track_id, (name, duration_ms, album_id, artist_ids) in TRACKS.items():
            cur.execute("insert into raw.tracks (track_id, name, duration_ms, album_id, artist_ids, fetched_at)"
                        " values (%s, %s, %s, %s, %s, now())", (track_id, name, duration_ms, album_id, artist_ids))
        for play in history.plays:
            cur.execute("insert into raw.plays (user_id, played_at, track_id, source, ms_played, ingested_at)"
                        " values (%s, %s, %s, %s, %s, now())",
                        (play.user_id, play.played_at, play.track_id, play.source, play.ms_played))
        for user_id, gap_from, gap_to in history.gaps:
            cur.execute("insert into app.ingest_gaps (user_id, gap_from, gap_to) values (%s, %s, %s)",
                        (user_id, gap_from, gap_to))


# ---------------------------------------------------------------- the independent computation

def _round(value: Decimal, places: str = "0.1") -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_UP)


def _minutes(ms: int) -> Decimal:
    return _round(Decimal(ms) / 60000)


@dataclass
class Play:
    played_at: dt.datetime
    track_id: str
    ms_played: int | None
    ms_listened: int = 0
    local: dt.datetime | None = None

    @property
    def week_start(self) -> dt.date:
        day = self.local.date()
        return day - dt.timedelta(days=day.weekday())


def deduplicate(rows: list[RawPlay]) -> list[Play]:
    """One user's plays: skip events (< 30 s) left out; copies of one play (same track, each
    within 30 s of the one before) are one play, at the polled copy's time, with any copy's ms_played."""
    by_track = defaultdict(list)
    for row in rows:
        if row.ms_played is None or row.ms_played >= MIN_PLAY_MS:
            by_track[row.track_id].append(row)
    plays = []
    for track_rows in by_track.values():
        track_rows.sort(key=lambda r: r.played_at)
        clusters = [[track_rows[0]]]
        for previous, row in zip(track_rows, track_rows[1:]):
            if row.played_at - previous.played_at <= dt.timedelta(seconds=30):
                clusters[-1].append(row)
            else:
                clusters.append([row])
        for cluster in clusters:
            kept = min(cluster, key=lambda r: (SOURCE_PRIORITY[r.source], r.played_at))
            known = [r.ms_played for r in cluster if r.ms_played is not None]
            ms_played = kept.ms_played if kept.ms_played is not None else (max(known) if known else None)
            plays.append(Play(kept.played_at, kept.track_id, ms_played))
    return sorted(plays, key=lambda p: (p.played_at, p.track_id))


def _local_start(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(UTC)


def _overlap_seconds(spans: list[tuple[dt.datetime, dt.datetime]], start: dt.datetime, end: dt.datetime) -> Decimal:
    """Seconds of [start, end) inside the union of `spans` (each instant counted once)."""
    clipped = sorted((max(a, start), min(b, end)) for a, b in spans if min(b, end) > max(a, start))
    total, reach = dt.timedelta(0), None
    for a, b in clipped:
        if reach is None or a > reach:
            total += b - a
            reach = b
        elif b > reach:
            total += b - reach
            reach = b
    return Decimal(int(total.total_seconds() * 1_000_000)) / 1_000_000


def _credited_artists(track_id: str) -> list[str]:
    """A track's known artists, in credit order, each once."""
    if track_id not in TRACKS:
        return []
    seen = []
    for artist_id in TRACKS[track_id][3]:
        if artist_id in ARTISTS and artist_id not in seen:
            seen.append(artist_id)
    return seen


def _entry(rank, item_id, name, artists, plays, ms, image_url, kind):
    return {
        "rank": rank, "id": item_id, "name": name, "artists": artists, "plays": plays,
        "minutes": float(_minutes(ms)), "image_url": image_url,
        "spotify_url": None if kind is None or item_id.startswith("name:") else f"https://open.spotify.com/{kind}/{item_id}",
    }


def _top(totals: dict, describe, kind) -> list[dict]:
    """Top 5 of {id: [plays, ms]}: more plays, then more minutes, then name, then id."""
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], -kv[1][1], describe(kv[0])[0], kv[0]))
    entries = []
    for rank, (item_id, (plays, ms)) in enumerate(ranked[:5], start=1):
        name, artists, image_url = describe(item_id)
        entries.append(_entry(rank, item_id, name, artists, plays, ms, image_url, kind))
    return entries


def _describe_track(track_id):
    name, _, album_id, _ = TRACKS[track_id]
    artists = ", ".join(ARTISTS[a][0] for a in _credited_artists(track_id)) or None
    return name, artists, ALBUMS[album_id][2] if album_id in ALBUMS else None


def _describe_artist(artist_id):
    name, _, image_url = ARTISTS[artist_id]
    return name, None, image_url


def _describe_album(album_id):
    name, artist_ids, image_url = ALBUMS[album_id]
    return name, ", ".join(ARTISTS[a][0] for a in artist_ids if a in ARTISTS) or None, image_url


def _describe_genre(genre):
    return genre, None, None


def expected_weeks(history: History) -> dict[tuple[str, dt.date], dict]:
    """{(user_id, week_start): the mart row's numbers} for every user and local week with plays."""
    expected = {}
    for user_id, time_zone in USERS.items():
        zone = ZoneInfo(time_zone)
        rows = [p for p in history.plays if p.user_id == user_id]
        history_known_since = min(r.played_at for r in rows)
        gaps = [(a, b) for u, a, b in history.gaps if u == user_id and b > a]
        unknown = [(dt.datetime.min.replace(tzinfo=UTC), history_known_since)] + gaps

        plays = deduplicate(rows)
        previous_end = None
        for play in plays:
            listened = play.ms_played if play.ms_played is not None else (
                TRACKS[play.track_id][1] if play.track_id in TRACKS and TRACKS[play.track_id][1] else ESTIMATED_PLAY_MS)
            if previous_end is not None:
                listened = min(listened, int((play.played_at - previous_end).total_seconds() * 1000))
            play.ms_listened = listened
            play.local = play.played_at.astimezone(zone)
            previous_end = play.played_at

        weeks = defaultdict(list)
        for play in plays:
            weeks[play.week_start].append(play)
        listening_days = {p.local.date() for p in plays}
        first_track_week, first_artist_week = {}, {}
        for play in plays:
            if play.track_id in TRACKS:
                first_track_week.setdefault(play.track_id, play.week_start)
            for artist_id in _credited_artists(play.track_id):
                first_artist_week.setdefault(artist_id, play.week_start)

        history_week = history_known_since.astimezone(zone).date()
        history_week -= dt.timedelta(days=history_week.weekday())
        first_full_week = history_week if _local_start(history_week, zone) == history_known_since \
            else history_week + dt.timedelta(days=7)
        discoveries_from = first_full_week + dt.timedelta(weeks=DISCOVERY_MIN_HISTORY_WEEKS)

        def totals(week_plays):
            return len(week_plays), sum(p.ms_listened for p in week_plays)

        for week_start, week_plays in sorted(weeks.items()):
            start_at = _local_start(week_start, zone)
            end_at = _local_start(week_start + dt.timedelta(days=7), zone)
            week_seconds = Decimal(int((end_at - start_at).total_seconds()))
            plays_count, ms = totals(week_plays)
            minutes = _minutes(ms)
            known = [p for p in week_plays if p.track_id in TRACKS]
            row = {
                "week_end": week_start + dt.timedelta(days=6),
                "time_zone": time_zone,
                "week_start_at": start_at,
                "week_end_at": end_at,
                "history_known_since": history_known_since,
                "plays": plays_count,
                "ms_listened": ms,
                "minutes_listened": minutes,
                "distinct_tracks": len({p.track_id for p in known}),
                "distinct_artists": len({a for p in known for a in _credited_artists(p.track_id)}),
                "plays_estimated_minutes": sum(p.ms_played is None for p in week_plays),
                "plays_pending_metadata": plays_count - len(known),
            }

            # habits
            days = sorted({p.local.date() for p in week_plays})
            streaks = []  # (days in the week, days running up to its last day)
            for day in days:
                if streaks and day - dt.timedelta(days=1) == streaks[-1][2]:
                    streaks[-1] = (streaks[-1][0] + 1, 0, day)
                else:
                    streaks.append((1, 0, day))
            running = []
            for in_week, _, last_day in streaks:
                count, day = 0, last_day
                while day in listening_days:
                    count, day = count + 1, day - dt.timedelta(days=1)
                running.append((in_week, count))
            longest = max(running)
            hours = defaultdict(int)
            weekdays = defaultdict(int)
            for p in week_plays:
                hours[p.local.hour] += 1
                weekdays[p.local.isoweekday()] += 1
            row.update(
                days_with_plays=len(days),
                longest_streak_days=longest[0],
                longest_streak_running_days=longest[1],
                busiest_hour=min(hours, key=lambda h: (-hours[h], h)),
                busiest_weekday=min(weekdays, key=lambda d: (-weekdays[d], d)),
            )

            # pictures
            by_day, clock = defaultdict(int), defaultdict(int)
            for p in week_plays:
                by_day[p.local.date()] += p.ms_listened
                clock[(p.local.date(), p.local.hour)] += p.ms_listened
            week_days = [week_start + dt.timedelta(days=i) for i in range(7)]
            row["minutes_by_day"] = [{"date": d.isoformat(), "minutes": float(_minutes(by_day[d]))} for d in week_days]
            row["listening_clock"] = [[float(_minutes(clock[(d, h)])) for h in range(24)] for d in week_days]

            # top lists: only what is known
            track_totals, artist_totals, album_totals, genre_totals = (defaultdict(lambda: [0, 0]) for _ in range(4))
            for p in known:
                for bucket, key in [(track_totals, p.track_id)] \
                        + [(artist_totals, a) for a in _credited_artists(p.track_id)] \
                        + ([(album_totals, TRACKS[p.track_id][2])] if TRACKS[p.track_id][2] in ALBUMS else []) \
                        + [(genre_totals, g) for g in sorted({g for a in _credited_artists(p.track_id)
                                                              for g in (ARTISTS[a][1] or [])})]:
                    bucket[key][0] += 1
                    bucket[key][1] += p.ms_listened
            row.update(
                top_tracks=_top(track_totals, _describe_track, "track"),
                top_artists=_top(artist_totals, _describe_artist, "artist"),
                top_albums=_top(album_totals, _describe_album, "album"),
                top_genres=_top(genre_totals, _describe_genre, None),
            )

            # discoveries: only with 8 whole weeks of history before the week
            available = week_start >= discoveries_from
            new_artist_plays = defaultdict(int)
            for p in known:
                for a in _credited_artists(p.track_id):
                    if first_artist_week[a] == week_start:
                        new_artist_plays[a] += 1
            ranked = sorted(new_artist_plays.items(), key=lambda kv: (-kv[1], ARTISTS[kv[0]][0], kv[0]))
            row.update(
                discoveries_available=available,
                weeks_until_discoveries=max(0, (discoveries_from - week_start).days // 7),
                new_tracks=sum(w == week_start for w in first_track_week.values()) if available else None,
                new_artists=len(new_artist_plays) if available else None,
                top_new_artists=[{"rank": rank, "id": a, "name": ARTISTS[a][0], "plays": n}
                                 for rank, (a, n) in enumerate(ranked[:5], start=1)] if available else [],
            )

            # week over week: only a wholly covered week is compared
            previous_start_at = _local_start(week_start - dt.timedelta(days=7), zone)
            if start_at <= history_known_since:
                status = "not_known"
            elif _overlap_seconds(unknown, previous_start_at, start_at) > 0:
                status = "partial"
            else:
                status = "compared" if weeks.get(week_start - dt.timedelta(days=7)) else "no_plays"
            row["previous_week_status"] = status
            if status in ("compared", "no_plays"):
                previous_plays, previous_ms = totals(weeks.get(week_start - dt.timedelta(days=7), []))
                row.update(
                    previous_week_plays=previous_plays,
                    previous_week_minutes_listened=_minutes(previous_ms),
                    plays_change=plays_count - previous_plays,
                    minutes_listened_change=minutes - _minutes(previous_ms),
                )
            else:
                row.update(previous_week_plays=None, previous_week_minutes_listened=None, plays_change=None,
                           minutes_listened_change=None)

            # coverage
            missed = _overlap_seconds(unknown, start_at, end_at)
            row.update(
                has_gap=any(a < end_at and b > start_at for a, b in gaps),
                week_hours=_round(week_seconds / 3600),
                missed_hours=_round(missed / 3600),
                estimated_missed_plays=0 if missed == 0 else int(_round(plays_count * missed / (week_seconds - missed), "1")),
            )
            expected[(user_id, week_start)] = row
    return expected
