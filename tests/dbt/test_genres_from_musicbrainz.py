"""The week's top genres fill from MusicBrainz's genres (app.artist_genres) when Spotify gives none:
the real dbt models up to wrapped_weekly, in a database of this test's own."""

from __future__ import annotations

import psycopg2.extras
import pytest

from weekly_wrapped.marts.dbt_runner import Warehouse, dbt_command, dbt_env, default_dbt_bin, run_dbt

from tests.support.postgres import private_database

ARTISTS = [
    # artist_id, name, Spotify's genres (None: none, as for every new app)
    ("a_queen", "Queen", ["rock"]),
    ("a_nils", "Nils Frahm", None),
    ("a_kid", "Kid Nobody", None),
]
TRACKS = [("t_bohemian", "Bohemian Rhapsody", 300_000, ["a_queen"]), ("t_says", "Says", 480_000, ["a_nils"]),
          ("t_kid", "First Song", 200_000, ["a_kid"])]
PLAYS = [  # Oslo, week of Monday 2026-11-16 (UTC+1)
    ("2026-11-16 09:00:00+00", "t_says"), ("2026-11-17 09:00:00+00", "t_says"),
    ("2026-11-18 09:00:00+00", "t_bohemian"), ("2026-11-19 09:00:00+00", "t_kid"),
]
LOOKED_UP = [
    # artist_id, status, genres
    ("a_nils", "found", ["ambient", "electronic"]),
    ("a_queen", "found", ["glam rock"]),  # Spotify's genres win
    ("a_kid", "not_found", []),  # a miss adds nothing
]


@pytest.fixture(scope="module")
def built(postgres, tmp_path_factory):
    with private_database(postgres.dsn, "wrapped_dbt_genres", schema=True) as (name, dsn):
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("insert into app.users (user_id, email, time_zone, consent_at) "
                        "values ('oslo', 'oslo@example.com', 'Europe/Oslo', now())")
            for artist_id, artist_name, genres in ARTISTS:
                cur.execute("insert into raw.artists (artist_id, name, genres, fetched_at) values (%s, %s, %s, now())",
                            (artist_id, artist_name, genres))
            for track_id, track_name, duration_ms, artist_ids in TRACKS:
                cur.execute("insert into raw.tracks (track_id, name, duration_ms, artist_ids, fetched_at) "
                            "values (%s, %s, %s, %s, now())", (track_id, track_name, duration_ms, artist_ids))
            for played_at, track_id in PLAYS:
                cur.execute("insert into raw.plays (user_id, played_at, track_id, source, ingested_at) "
                            "values ('oslo', %s, %s, 'api', now())", (played_at, track_id))
            for artist_id, status, genres in LOOKED_UP:
                cur.execute("insert into app.artist_genres (artist_id, artist_name, genres, status) "
                            "values (%s, %s, %s, %s)", (artist_id, artist_id, genres, status))
        warehouse = Warehouse(postgres.host, postgres.port, postgres.user, postgres.password, name)
        artifacts = tmp_path_factory.mktemp("dbt-genres")
        statuses = run_dbt(dbt_command(default_dbt_bin(), ("run", "--select", "+wrapped_weekly"),
                                       artifacts_dir=artifacts),
                           dbt_env(warehouse), run_results=artifacts / "target" / "run_results.json")
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute("select artist_id, genres, genre_source from marts.dim_artist order by artist_id")
            artists = {row["artist_id"]: row for row in cur.fetchall()}
            cur.execute("select top_genres from marts.wrapped_weekly where user_id = 'oslo' "
                        "and week_start = '2026-11-16'")
            top_genres = cur.fetchone()["top_genres"]
        conn.close()
        yield statuses, artists, top_genres


def test_dim_artist_takes_musicbrainz_genres_only_where_spotify_gives_none(built):
    statuses, artists, _ = built
    assert set(statuses) == {"success"}, statuses
    nils = artists["a_nils"]
    assert (nils["genres"], nils["genre_source"]) == (["ambient", "electronic"], "musicbrainz")
    assert (artists["a_queen"]["genres"], artists["a_queen"]["genre_source"]) == (["rock"], "spotify")
    assert (artists["a_kid"]["genres"], artists["a_kid"]["genre_source"]) == ([], None)


def test_top_genres_of_the_week_fill_from_musicbrainz(built):
    _, _, top_genres = built
    assert sorted((g["name"], g["plays"]) for g in top_genres) == [("ambient", 2), ("electronic", 2), ("rock", 1)]
