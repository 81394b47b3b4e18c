"""Exported weeks on the real warehouse: skips kept apart from plays, account-data plays keyed by
name (resolved or not), and name-only albums/artists ranked on the day of the import.

lisbon's week (listening_history.EXPORT_PLAYS), worked out by hand: 8 raw rows =
4 plays (10:00, 10:20, the account-data 09:00 + its extended copy 09:00:41, the unresolved
12:00) and 2 skip events (10:10, and 08:00 in both exports), so a skip rate of 2 / 6.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from listening_history import NAME_ALBUM, NAME_ARTIST, PENDING_KEY, RESOLVED_KEY

from weekly_wrapped import contracts

DBT_PROJECT_YML = Path(__file__).resolve().parents[2] / "dbt_project" / "dbt_project.yml"
UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def weeks(dbt_built) -> dict[tuple[str, str], dict]:
    return {(row["user_id"], row["week_start"].isoformat()): row for row in dbt_built.wrapped_weekly}


def _lisbon_plays(run) -> list[dict]:
    return run.rows(
        "select track_id, track_name_key, played_at, ms_played, source_rows from marts.fct_plays"
        " where user_id = 'lisbon' order by played_at"
    )


def test_the_skip_threshold_is_the_contracts():
    assert yaml.safe_load(DBT_PROJECT_YML.read_text())["vars"]["min_play_ms"] == contracts.MIN_PLAY_MS


def test_plays_leave_out_skips_and_collapse_the_account_copy(dbt_built):
    assert _lisbon_plays(dbt_built) == [
        {"track_id": "t_svefn", "track_name_key": None, "played_at": dt.datetime(2026, 11, 17, 10, tzinfo=UTC),
         "ms_played": 400_000, "source_rows": 1},
        {"track_id": "t_svefn", "track_name_key": None, "played_at": dt.datetime(2026, 11, 17, 10, 20, tzinfo=UTC),
         "ms_played": 300_000, "source_rows": 1},
        # the account-data row, resolved, and its extended copy: one play, the extended row kept
        {"track_id": "t_svefn", "track_name_key": RESOLVED_KEY,
         "played_at": dt.datetime(2026, 11, 18, 9, 0, 41, tzinfo=UTC), "ms_played": 250_000, "source_rows": 2},
        # unresolved: counts at once, under its name key
        {"track_id": PENDING_KEY, "track_name_key": PENDING_KEY,
         "played_at": dt.datetime(2026, 11, 18, 12, tzinfo=UTC), "ms_played": 200_000, "source_rows": 1},
    ]
    [row] = dbt_built.rows(
        "select count(*) as short from marts.fct_plays where ms_played < %s", (contracts.MIN_PLAY_MS,)
    )
    assert row["short"] == 0


def test_skip_events_once_each_with_how_they_ended(dbt_built):
    assert dbt_built.rows(
        "select track_id, skipped_at, ms_played, reason_end, shuffle, offline from marts.fct_skips"
        " order by skipped_at"
    ) == [
        {"track_id": "t_svefn", "skipped_at": dt.datetime(2026, 11, 17, 10, 10, tzinfo=UTC), "ms_played": 5_000,
         "reason_end": "fwdbtn", "shuffle": True, "offline": False},
        # the account-data copy (08:00:00) of this skip is the same skip event
        {"track_id": "t_svefn", "skipped_at": dt.datetime(2026, 11, 19, 8, 0, 12, tzinfo=UTC), "ms_played": 3_000,
         "reason_end": "fwdbtn", "shuffle": True, "offline": False},
    ]


def test_skip_rate_and_most_skipped(weeks):
    week = weeks[("lisbon", "2026-11-16")]
    assert (week["plays"], week["skip_events"], week["skip_rate"]) == (4, 2, Decimal("0.3333"))
    assert week["top_skipped_tracks"] == [
        {"rank": 1, "id": "t_svefn", "name": "Svefn-g-englar", "artists": "Sigur Rós", "plays": 2, "minutes": 0.1},
    ]
    # only polled plays: the API cannot see skips, so no rate at all rather than 0 %
    only_api = weeks[("berlin", "2026-11-09")]
    assert (only_api["skip_events"], only_api["skip_rate"], only_api["top_skipped_tracks"]) == (0, None, [])
    # an exported play in the week: skips are known, and there were none
    assert weeks[("berlin", "2026-11-16")]["skip_rate"] == Decimal("0.0000")
    assert weeks[("tokyo", "2026-11-23")]["skip_rate"] == Decimal("0.0000")


def test_name_only_albums_and_artists_rank_on_the_day_of_the_import(weeks):
    week = weeks[("lisbon", "2026-11-16")]
    assert (week["distinct_tracks"], week["distinct_artists"]) == (2, 1)  # t_svefn and the unresolved key
    assert week["ms_listened"] == 1_150_000 and week["minutes_listened"] == Decimal("19.2")
    assert [(t["id"], t["name"], t["artists"], t["plays"]) for t in week["top_tracks"]] == [
        ("t_svefn", "Svefn-g-englar", "Sigur Rós", 3),
        (PENDING_KEY, "Starálfur", "Sigur Rós", 1),  # unresolved: ranked under its names
    ]
    assert [(a["id"], a["name"], a["plays"]) for a in week["top_artists"]] == [(NAME_ARTIST, "Sigur Rós", 4)]
    # account data names no album
    assert [(a["id"], a["name"], a["artists"], a["plays"]) for a in week["top_albums"]] == [
        (NAME_ALBUM, "Ágætis byrjun", "Sigur Rós", 3),
    ]


def test_metadata_then_a_resolution_arrive_and_no_count_changes(dbt_built):
    """Spotify metadata replaces the name-only album and artist (as the consumer does: the
    newer fetched_at wins), then the pending name key is resolved: the same plays, counted once,
    now under the real ids. An incremental build picks the resolution up (no raw row changed)."""
    conn = dbt_built.connect()
    with conn.cursor() as cur:
        # another track of the album, imported the next week, whose metadata is still to come
        cur.execute("insert into raw.tracks (track_id, name, album_id, artist_ids, fetched_at)"
                    " values ('t_vidrar', 'Viðrar vel til loftárása', %s, %s, to_timestamp(0))",
                    (NAME_ALBUM, [NAME_ARTIST]))
        cur.execute("insert into raw.plays (user_id, played_at, track_id, source, ms_played, ingested_at)"
                    " values ('lisbon', '2026-11-24 10:00:00+00', 't_vidrar', 'export', 300000, now())")
        cur.execute("insert into raw.artists (artist_id, name, genres, fetched_at)"
                    " values ('a_sigur', 'Sigur Rós', array['post-rock'], now())")
        cur.execute("insert into raw.albums (album_id, name, artist_ids, fetched_at)"
                    " values ('al_agaetis', 'Ágætis byrjun', array['a_sigur'], now())")
        cur.execute("update raw.tracks set album_id = 'al_agaetis', artist_ids = array['a_sigur'],"
                    " duration_ms = 600000, fetched_at = now(), loaded_at = now() where track_id = 't_svefn'")
        cur.execute("insert into raw.tracks (track_id, name, duration_ms, album_id, artist_ids, fetched_at)"
                    " values ('t_staralfur', 'Starálfur', 400000, 'al_agaetis', array['a_sigur'], now())")
    statuses = dbt_built.dbt("build")
    assert set(statuses) <= {"success", "pass", "warn"}, statuses

    [week] = dbt_built.rows("select * from marts.wrapped_weekly where user_id = 'lisbon'"
                            " and week_start = '2026-11-16'")
    assert (week["plays"], week["skip_events"], week["skip_rate"]) == (4, 2, Decimal("0.3333"))
    assert (week["distinct_tracks"], week["distinct_artists"]) == (2, 1)
    # the still name-only track credits the real artist too: one artist, not two "Sigur Rós"
    assert [(a["id"], a["name"], a["plays"]) for a in week["top_artists"]] == [("a_sigur", "Sigur Rós", 4)]
    assert [(a["id"], a["plays"]) for a in week["top_albums"]] == [("al_agaetis", 3)]
    assert [(g["name"], g["plays"]) for g in week["top_genres"]] == [("post-rock", 4)]
    # the track still known by names is on the same album and by the same artist meanwhile
    [next_week] = dbt_built.rows("select * from marts.wrapped_weekly where user_id = 'lisbon'"
                                 " and week_start = '2026-11-23'")
    assert [(a["id"], a["name"], a["plays"]) for a in next_week["top_albums"]] == [("al_agaetis", "Ágætis byrjun", 1)]
    assert [(a["id"], a["plays"]) for a in next_week["top_artists"]] == [("a_sigur", 1)]

    with conn.cursor() as cur:
        cur.execute("update app.track_resolutions set track_id = 't_staralfur', status = 'resolved',"
                    " resolved_at = now() where name_key = %s", (PENDING_KEY,))
    statuses = dbt_built.dbt("build", "--select", "fct_plays")
    assert set(statuses) <= {"success", "pass", "warn"}, statuses
    plays = _lisbon_plays(dbt_built)
    assert len(plays) == 4 + 1  # t_vidrar's, the week after
    assert plays[3]["track_id"] == "t_staralfur" and plays[3]["track_name_key"] == PENDING_KEY

    statuses = dbt_built.dbt("build")
    assert set(statuses) <= {"success", "pass", "warn"}, statuses
    [week] = dbt_built.rows("select * from marts.wrapped_weekly where user_id = 'lisbon'"
                            " and week_start = '2026-11-16'")
    assert (week["plays"], week["distinct_tracks"], week["distinct_artists"]) == (4, 2, 1)
    assert [(t["id"], t["plays"]) for t in week["top_tracks"]] == [("t_svefn", 3), ("t_staralfur", 1)]
    assert [(a["id"], a["plays"]) for a in week["top_artists"]] == [("a_sigur", 4)]
    assert [(a["id"], a["plays"]) for a in week["top_albums"]] == [("al_agaetis", 4)]
