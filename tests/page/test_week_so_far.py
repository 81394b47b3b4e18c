"""The week so far equals the same numbers worked out in plain Python from the raw rows
(docs/recap.md's rules, recap_truth's deduplication), and equals marts.wrapped_weekly for every
week dbt built; plays that arrived after the build count; last week is compared up to the same
local weekday and time, DST included.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg2
import pytest

from tests.recap.recap_truth import ALBUMS, ESTIMATED_PLAY_MS, USERS, _minutes, deduplicate

from weekly_wrapped.page.week_so_far import same_point_last_week, week_so_far

UTC = dt.timezone.utc


def local(user_id: str, *args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=ZoneInfo(USERS[user_id])).astimezone(UTC)


# ---------------------------------------------------------------- the independent computation

def truth(page_db, user_id: str, start: dt.datetime, end: dt.datetime) -> dict:
    """The figures of the user's plays that ended in [start, end], from every raw row."""
    tracks, artists = page_db.tracks, page_db.artists
    zone = ZoneInfo(USERS[user_id])
    plays = deduplicate([p for p in page_db.history.plays if p.user_id == user_id])
    previous_end = None
    for play in plays:
        listened = play.ms_played if play.ms_played is not None else (
            (tracks.get(play.track_id, (None, None))[1]) or ESTIMATED_PLAY_MS)
        if previous_end is not None:
            listened = min(listened, int((play.played_at - previous_end).total_seconds() * 1000))
        play.ms_listened = listened
        previous_end = play.played_at
    window = [p for p in plays if start <= p.played_at <= end]
    known = [p for p in window if p.track_id in tracks]

    def credited(track_id):
        return [a for a in dict.fromkeys(tracks[track_id][3]) if a in artists]

    totals = {"track": defaultdict(lambda: [0, 0]), "artist": defaultdict(lambda: [0, 0]),
              "album": defaultdict(lambda: [0, 0])}
    for p in known:
        keys = [("track", p.track_id)] + [("artist", a) for a in credited(p.track_id)]
        if tracks[p.track_id][2] in ALBUMS:
            keys.append(("album", tracks[p.track_id][2]))
        for kind, key in keys:
            totals[kind][key][0] += 1
            totals[kind][key][1] += p.ms_listened

    def name(kind, item_id):
        return {"track": tracks, "artist": artists, "album": ALBUMS}[kind][item_id][0]

    def top(kind):
        ranked = sorted(totals[kind].items(), key=lambda kv: (-kv[1][0], -kv[1][1], name(kind, kv[0]), kv[0]))
        return [(item_id, name(kind, item_id), plays, _minutes(ms)) for item_id, (plays, ms) in ranked[:5]]

    monday = start.astimezone(zone).date()
    clock = defaultdict(int)
    for p in window:
        at = p.played_at.astimezone(zone)
        clock[(at.date(), at.hour)] += p.ms_listened
    return {
        "plays": len(window),
        "minutes": _minutes(sum(p.ms_listened for p in window)),
        "plays_estimated_minutes": sum(p.ms_played is None for p in window),
        "plays_pending_metadata": len(window) - len(known),
        "top_tracks": top("track"), "top_artists": top("artist"), "top_albums": top("album"),
        "listening_clock": [[_minutes(clock[(monday + dt.timedelta(days=d), h)]) for h in range(24)]
                            for d in range(7)],
    }


def figures(week) -> dict:
    return {
        "plays": week.plays,
        "minutes": week.minutes,
        "plays_estimated_minutes": week.plays_estimated_minutes,
        "plays_pending_metadata": week.plays_pending_metadata,
        **{kind: [(i.id, i.name, i.plays, i.minutes) for i in getattr(week, kind)]
           for kind in ("top_tracks", "top_artists", "top_albums")},
        "listening_clock": week.listening_clock,
    }


# ---------------------------------------------------------------- the tests

NOWS = [
    # (user, local now): mid-week points, the DST weeks, the day Samoa skipped, after the build
    ("berlin", (2026, 10, 21, 20, 0, 5)),   # a polled play and its export copy, 8 s apart, just before
    ("berlin", (2026, 10, 25, 3, 0)),       # Sunday, after 02:xx happened twice (169-hour week)
    ("berlin", (2026, 10, 27, 12, 0)),      # last week's same point lies before the clocks went back
    ("berlin", (2026, 11, 4, 9, 30)),       # last week had an ingest gap: partial
    ("berlin", (2026, 11, 10, 20, 0)),      # plays newer than the build (and a track fetched since)
    ("new_york", (2026, 10, 20, 8, 0)),     # last week was silent: no_plays
    ("new_york", (2026, 11, 2, 23, 0)),     # a week after the clocks went back (169 hours)
    ("new_york", (2026, 11, 11, 22, 5)),    # ms_played longer than the track; an overlapping play
    ("tokyo", (2026, 11, 5, 12, 0)),        # the history starts this week: last week not known
    ("tokyo", (2026, 11, 20, 12, 3)),       # a track without a length, capped
    ("tokyo", (2026, 12, 2, 23, 59)),       # plays newer than the build: a copy, a skip, pending, new track
    ("apia", (2011, 12, 31, 1, 0)),         # Samoa skipped Friday 2011-12-30
    ("apia", (2012, 1, 4, 12, 0)),          # last week was the 144-hour week
]


@pytest.mark.parametrize("user_id,local_now", NOWS, ids=[f"{u}-{n[0]}-{n[1]:02d}-{n[2]:02d}" for u, n in NOWS])
def test_the_week_so_far_equals_the_raw_rows(page_db, user_id, local_now):
    now = local(user_id, *local_now)
    zone = ZoneInfo(USERS[user_id])
    got = week_so_far(page_db.dsn, user_id, now)

    monday = now.astimezone(zone).date() - dt.timedelta(days=now.astimezone(zone).weekday())
    this_start = local(user_id, monday.year, monday.month, monday.day)
    last_monday = monday - dt.timedelta(days=7)
    last_start = local(user_id, last_monday.year, last_monday.month, last_monday.day)
    assert got.week_start == monday
    assert got.this_week.start == this_start and got.last_week.start == last_start
    assert figures(got.this_week) == truth(page_db, user_id, this_start, now)
    assert figures(got.last_week) == truth(page_db, user_id, last_start, same_point_last_week(now, zone))
    held = [p.played_at for p in page_db.history.plays if p.user_id == user_id and p.played_at <= now]
    assert got.as_of == max(held)


def test_same_point_last_week_is_the_same_local_weekday_and_time():
    berlin = ZoneInfo("Europe/Berlin")
    now = dt.datetime(2026, 10, 27, 12, 0, tzinfo=berlin)  # CET, two days after the clocks went back
    before = same_point_last_week(now, berlin)
    assert before.astimezone(berlin).replace(tzinfo=None) == dt.datetime(2026, 10, 20, 12, 0)
    assert now - before == dt.timedelta(days=7, hours=1)  # a 169-hour week lies between


def test_plays_newer_than_the_build_count_and_are_said(page_db):
    now = local("tokyo", 2026, 12, 2, 23, 59)
    got = week_so_far(page_db.dsn, "tokyo", now)
    assert not any(w == dt.date(2026, 11, 30) for u, w in page_db.wrapped_weekly if u == "tokyo")
    # t_late twice, t02 once (its export copy is the same play), t_pending, t13, t06; not the skip
    assert got.this_week.plays == 6
    assert got.plays_since_build == 6
    assert got.built_through is not None and got.built_through <= page_db.built_at
    assert got.this_week.plays_pending_metadata == 1
    assert got.this_week.top_tracks[0].id == "t_late" and got.this_week.top_tracks[0].plays == 2
    assert "Late Artist" in [a.name for a in got.this_week.top_artists]
    t02 = next(t for t in got.this_week.top_tracks if t.id == "t02")
    assert t02.plays == 1 and t02.minutes == Decimal("3.3")  # the copy's ms_played (200 s), capped at 4 min
    assert got.compared == "compared"
    assert "6 of this week's plays arrived since" in got.based_on and "wait for their track details" in got.based_on


def test_last_week_is_compared_only_when_it_is_known_and_whole(page_db):
    cases = {
        ("tokyo", (2026, 11, 5, 12, 0)): "not_known",    # history starts on Wednesday 11-04
        ("tokyo", (2026, 11, 12, 12, 0)): "partial",     # last week: history started inside it
        ("new_york", (2026, 10, 20, 8, 0)): "no_plays",  # last week silent
        ("berlin", (2026, 11, 4, 9, 30)): "partial",     # an ingest gap on 10-28
        ("berlin", (2026, 11, 10, 20, 0)): "compared",
    }
    for (user_id, local_now), status in cases.items():
        got = week_so_far(page_db.dsn, user_id, local(user_id, *local_now))
        assert got.compared == status, (user_id, local_now)
        if status in ("compared", "no_plays"):
            assert got.minutes_change == got.this_week.minutes - got.last_week.minutes
        else:
            assert got.minutes_change is None and got.plays_change is None


def test_a_whole_built_week_equals_the_mart(page_db):
    """At the last instant of each week dbt built, the week so far is that week's mart row."""
    compared = 0
    for (user_id, week_start), row in sorted(page_db.wrapped_weekly.items()):
        zone = ZoneInfo(USERS[user_id])
        next_monday = week_start + dt.timedelta(days=7)
        now = dt.datetime.combine(next_monday, dt.time(0), tzinfo=zone).astimezone(UTC) - dt.timedelta(microseconds=1)
        week = week_so_far(page_db.dsn, user_id, now).this_week
        assert week.plays == row["plays"], (user_id, week_start)
        assert week.minutes == row["minutes_listened"], (user_id, week_start)
        assert week.plays_estimated_minutes == row["plays_estimated_minutes"]
        assert week.plays_pending_metadata == row["plays_pending_metadata"]
        for kind in ("top_tracks", "top_artists", "top_albums"):
            mine = [{"rank": i.rank, "id": i.id, "name": i.name, "artists": i.artists, "plays": i.plays,
                     "minutes": float(i.minutes), "image_url": i.image_url, "spotify_url": i.spotify_url}
                    for i in getattr(week, kind)]
            assert mine == row[kind], (user_id, week_start, kind)
        assert [[float(m) for m in day] for day in week.listening_clock] == row["listening_clock"]
        assert [{"date": d["date"].isoformat(), "minutes": float(d["minutes"])} for d in week.minutes_by_day] \
            == row["minutes_by_day"]
        compared += 1
    assert compared == len(page_db.wrapped_weekly) > 30


def test_before_any_dbt_build_the_raw_rows_alone_are_read(postgres):
    """A new installation (no marts yet): the week so far comes from raw.* alone, by the same rules."""
    from types import SimpleNamespace

    from tests.recap import recap_truth
    from tests.support.postgres import private_database

    history = recap_truth.build_history()
    with private_database(postgres.dsn, "wrapped_page_raw", schema=True) as (_, dsn):
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        try:
            recap_truth.seed(conn, history)
        finally:
            conn.close()
        raw_only = SimpleNamespace(history=history, tracks=recap_truth.TRACKS, artists=recap_truth.ARTISTS)
        for user_id, local_now in [("berlin", (2026, 10, 21, 20, 0, 5)), ("new_york", (2026, 11, 11, 22, 5)),
                                   ("apia", (2011, 12, 31, 1, 0))]:
            now = local(user_id, *local_now)
            zone = ZoneInfo(USERS[user_id])
            got = week_so_far(dsn, user_id, now)
            assert got.built_through is None and got.plays_since_build == got.this_week.plays > 0
            assert figures(got.this_week) == truth(raw_only, user_id, got.this_week.start, now)
            assert figures(got.last_week) == truth(raw_only, user_id, got.last_week.start, same_point_last_week(now, zone))


def test_the_marts_the_page_reads_are_indexed_for_one_user(page_db):
    """The page reads one user's plays of a range and the newest load (bench/page_latency.py)."""
    indexes = {(row["tablename"], row["indexdef"].split(" USING btree ")[1])
               for row in page_db.rows("select tablename, indexdef from pg_indexes where schemaname = 'marts'")}
    assert {("fct_plays", "(user_id, played_at)"), ("fct_plays", "(loaded_at)"),
            ("wrapped_weekly", "(user_id, week_start)")} <= indexes


def test_an_unknown_time_zone_counts_as_utc_as_in_the_marts(page_db):
    conn = psycopg2.connect(page_db.dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("insert into app.users (user_id, email, time_zone) values ('mars', 'mars@example.com', 'Mars/Olympus')")
        got = week_so_far(page_db.dsn, "mars", dt.datetime(2026, 11, 18, 12, 0, tzinfo=UTC))
        assert (got.time_zone, got.this_week.plays, got.compared) == ("UTC", 0, "not_known")
        assert got.this_week.start == dt.datetime(2026, 11, 16, tzinfo=UTC)
        with pytest.raises(LookupError):
            week_so_far(page_db.dsn, "nobody", dt.datetime(2026, 11, 18, tzinfo=UTC))
    finally:
        with conn, conn.cursor() as cur:
            cur.execute("delete from app.users where user_id = 'mars'")
        conn.close()
