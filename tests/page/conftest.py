"""Shared fixtures of the page tests: one private database with the listening histories of
tests/recap/recap_truth.py (four users, four time zones, a DST week, Samoa's skipped day,
copies, skips, gaps, plays pending metadata), ONE real `dbt run` of the project there, and
then plays that arrived after that build (`LATE_ROWS`: the marts do not hold them).

`page_db.history` holds every raw row (the seeded ones and the late ones), for the
independent computation the tests compare with.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg2
import psycopg2.extras
import pytest

from tests.recap.recap_truth import RawPlay, build_history, seed
from tests.support.postgres import private_database

from weekly_wrapped.marts.dbt_runner import Warehouse, dbt_command, dbt_env, default_dbt_bin, run_dbt

UTC = dt.timezone.utc
TOKYO = dt.timezone(dt.timedelta(hours=9))
BERLIN_WINTER = dt.timezone(dt.timedelta(hours=1))

# Metadata fetched after the build: a new track, by a known and a new artist.
LATE_ARTISTS = {"a_late": ("Late Artist", None, "https://i.scdn.co/image/artist_late")}
LATE_TRACKS = {"t_late": ("Late Track", 180_000, "al01", ["a_late", "a01"])}


def _at(*args, tz) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz).astimezone(UTC)


LATE_ROWS = [
    # tokyo, the week of Monday 2026-11-30 (the marts end on Sunday 11-29)
    RawPlay("tokyo", _at(2026, 11, 30, 8, 0, tz=TOKYO), "t_late", "api", None),
    RawPlay("tokyo", _at(2026, 11, 30, 8, 4, tz=TOKYO), "t02", "api", None),
    RawPlay("tokyo", _at(2026, 11, 30, 8, 4, 9, tz=TOKYO), "t02", "export", 200_000),  # a copy: one play, ms known
    RawPlay("tokyo", _at(2026, 11, 30, 8, 5, tz=TOKYO), "t04", "export", 12_000),  # a skip event
    RawPlay("tokyo", _at(2026, 11, 30, 8, 8, tz=TOKYO), "t_late", "api", None),
    RawPlay("tokyo", _at(2026, 12, 1, 21, 0, tz=TOKYO), "t_pending", "api", None),  # metadata pending
    RawPlay("tokyo", _at(2026, 12, 1, 21, 2, tz=TOKYO), "t13", "api", None),  # no length: 3.5 min, capped at 2
    RawPlay("tokyo", _at(2026, 12, 2, 23, 30, tz=TOKYO), "t06", "api", None),
    # berlin, the week of Monday 2026-11-09 (the marts end on Sunday 11-08)
    RawPlay("berlin", _at(2026, 11, 9, 7, 30, tz=BERLIN_WINTER), "t01", "api", None),
    RawPlay("berlin", _at(2026, 11, 9, 7, 33, tz=BERLIN_WINTER), "t_late", "api", None),
    RawPlay("berlin", _at(2026, 11, 10, 19, 0, tz=BERLIN_WINTER), "t03", "api", None),
]


@dataclass
class PageDatabase:
    dsn: str
    history: object  # recap_truth.History, with LATE_ROWS added
    tracks: dict  # recap_truth.TRACKS with LATE_TRACKS
    artists: dict  # recap_truth.ARTISTS with LATE_ARTISTS
    built_at: dt.datetime  # after the build, before the late rows
    wrapped_weekly: dict  # {(user_id, week_start): row} as dbt built it

    def rows(self, query: str, params=()) -> list[dict]:
        conn = psycopg2.connect(self.dsn)
        try:
            with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(query, params)
                return [dict(row) for row in cur.fetchall()]
        finally:
            conn.close()


@pytest.fixture(scope="session")
def page_db(postgres, tmp_path_factory) -> PageDatabase:
    from tests.recap import recap_truth

    history = build_history()
    with private_database(postgres.dsn, "wrapped_page", schema=True) as (name, dsn):
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        try:
            seed(conn, history)
            warehouse = Warehouse(postgres.host, postgres.port, postgres.user, postgres.password, name)
            artifacts = tmp_path_factory.mktemp("dbt_page")
            # models only: their data tests and unit tests run in tests/dbt and tests/recap
            statuses = run_dbt(dbt_command(default_dbt_bin(), ("run",), artifacts_dir=artifacts),
                               dbt_env(warehouse), log=lambda line: None,
                               run_results=artifacts / "target" / "run_results.json")
            assert set(statuses) == {"success"}, statuses
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute("select * from marts.wrapped_weekly")
                mart = {(row["user_id"], row["week_start"]): dict(row) for row in cur.fetchall()}
                cur.execute("select now() as built_at")
                built_at = cur.fetchone()["built_at"]
                # what arrived after the build: loaded later than anything the marts hold
                cur.execute("select pg_sleep(0.01)")
                for artist_id, (artist_name, genres, image_url) in LATE_ARTISTS.items():
                    cur.execute("insert into raw.artists (artist_id, name, genres, image_url, fetched_at)"
                                " values (%s, %s, %s, %s, now())", (artist_id, artist_name, genres, image_url))
                for track_id, (track_name, duration_ms, album_id, artist_ids) in LATE_TRACKS.items():
                    cur.execute("insert into raw.tracks (track_id, name, duration_ms, album_id, artist_ids, fetched_at)"
                                " values (%s, %s, %s, %s, %s, now())",
                                (track_id, track_name, duration_ms, album_id, artist_ids))
                for play in LATE_ROWS:
                    cur.execute("insert into raw.plays (user_id, played_at, track_id, source, ms_played, ingested_at)"
                                " values (%s, %s, %s, %s, %s, now())",
                                (play.user_id, play.played_at, play.track_id, play.source, play.ms_played))
            history.plays = sorted(history.plays + LATE_ROWS, key=lambda p: (p.user_id, p.played_at, p.track_id))
            yield PageDatabase(dsn, history, {**recap_truth.TRACKS, **LATE_TRACKS},
                               {**recap_truth.ARTISTS, **LATE_ARTISTS}, built_at, mart)
        finally:
            conn.close()
