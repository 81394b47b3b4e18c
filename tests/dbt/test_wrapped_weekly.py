"""The real `dbt build` over a small known history: hand-computed numbers of the marts.

The history and the arithmetic behind every number are in listening_history.py.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

BERLIN_WEEK_2 = [
    {"rank": 1, "id": "t_bohemian", "name": "Bohemian Rhapsody", "artists": "Queen", "plays": 3, "minutes": 15.0},
    {"rank": 2, "id": "t_pressure", "name": "Under Pressure", "artists": "Queen, David Bowie", "plays": 2, "minutes": 5.0},
    # one play each: more minutes first
    {"rank": 3, "id": "t_heroes", "name": "Heroes", "artists": "David Bowie", "plays": 1, "minutes": 3.3},
    {"rank": 4, "id": "t_says", "name": "Says", "artists": "Nils Frahm", "plays": 1, "minutes": 1.7},
]


@pytest.fixture(scope="module")
def weeks(dbt_built) -> dict[tuple[str, str], dict]:
    rows = dbt_built.wrapped_weekly  # as built, whatever later tests load incrementally
    return {(row["user_id"], row["week_start"].isoformat()): row for row in rows}


def test_dbt_build_passes_models_data_tests_and_unit_tests(dbt_built):
    statuses = dbt_built.statuses
    assert set(statuses) <= {"success", "pass"}, statuses
    assert statuses["success"] >= 18  # every model built
    assert statuses["pass"] >= 90  # data tests and the unit tests


def test_one_row_per_user_and_local_week(weeks):
    assert sorted(weeks) == [
        ("berlin", "2026-11-09"),
        ("berlin", "2026-11-16"),  # includes the Sunday 23:30 Berlin play
        ("lisbon", "2026-11-16"),  # the exported week (test_skips_and_name_keys.py)
        ("tokyo", "2026-11-16"),
        ("tokyo", "2026-11-23"),  # the Monday 00:10 Tokyo play, the same UTC day as above
    ]
    berlin = weeks[("berlin", "2026-11-16")]
    assert berlin["week_end"] == dt.date(2026, 11, 22)
    assert berlin["time_zone"] == "Europe/Berlin"
    assert berlin["week_start_at"] == dt.datetime(2026, 11, 15, 23, tzinfo=dt.timezone.utc)
    assert berlin["week_end_at"] == dt.datetime(2026, 11, 22, 23, tzinfo=dt.timezone.utc)
    tokyo = weeks[("tokyo", "2026-11-23")]
    assert tokyo["week_start_at"] == dt.datetime(2026, 11, 22, 15, tzinfo=dt.timezone.utc)


def test_berlin_week_totals_and_habits(weeks):
    week = weeks[("berlin", "2026-11-16")]
    assert week["plays"] == 7  # the export copy of Monday's Heroes is the same play
    assert week["ms_listened"] == 1_500_000
    assert week["minutes_listened"] == Decimal("25.0")
    assert week["distinct_tracks"] == 4
    assert week["distinct_artists"] == 3
    assert week["days_with_plays"] == 4  # Mon, Tue, Thu, Sun
    assert week["longest_streak_days"] == 2  # Mon-Tue
    assert week["busiest_hour"] == 8  # 08:00, 08:05, 08:05, 08:09 local
    assert week["busiest_weekday"] == 1  # Mon, Tue, Sun tie at 2 plays: the earliest
    assert week["busiest_weekday_name"] == "Monday"


def test_berlin_week_top_fives(weeks):
    week = weeks[("berlin", "2026-11-16")]
    assert week["top_tracks"] == BERLIN_WEEK_2
    assert [(a["name"], a["plays"], a["minutes"]) for a in week["top_artists"]] == [
        ("Queen", 5, 20.0),  # Bohemian x3 + Under Pressure x2
        ("David Bowie", 3, 8.3),  # Heroes + Under Pressure x2
        ("Nils Frahm", 1, 1.7),
    ]
    assert [(a["name"], a["artists"], a["plays"]) for a in week["top_albums"]] == [
        ("A Night at the Opera", "Queen", 5),
        ("Heroes", "David Bowie", 1),  # ties with Spaces on plays, more minutes
        ("Spaces", "Nils Frahm", 1),
    ]
    # a play counts once per genre even when both its artists are glam rock; Nils has none
    assert [(g["name"], g["plays"]) for g in week["top_genres"]] == [
        ("glam rock", 6),
        ("rock", 5),
        ("art rock", 3),
    ]


def test_discoveries_and_change_vs_week_before(weeks):
    first, second = weeks[("berlin", "2026-11-09")], weeks[("berlin", "2026-11-16")]
    assert (first["new_tracks"], first["new_artists"]) == (2, 2)
    assert (first["previous_week_plays"], first["plays_change"]) == (0, 2)
    assert first["minutes_listened_change"] == Decimal("10.0")
    assert (second["new_tracks"], second["new_artists"]) == (2, 1)  # Bohemian, Says; Nils Frahm
    assert second["top_new_artists"] == [{"rank": 1, "id": "a_nils", "name": "Nils Frahm", "plays": 1}]
    assert second["previous_week_plays"] == 2
    assert second["previous_week_minutes_listened"] == Decimal("10.0")
    assert second["plays_change"] == 5
    assert second["minutes_listened_change"] == Decimal("15.0")


def test_has_gap_only_for_the_overlapping_week(weeks):
    assert weeks[("berlin", "2026-11-16")]["has_gap"] is True
    assert weeks[("berlin", "2026-11-09")]["has_gap"] is False
    assert weeks[("tokyo", "2026-11-23")]["has_gap"] is False


def test_tokyo_weeks_unknown_track_and_missing_genres(weeks):
    sunday = weeks[("tokyo", "2026-11-16")]
    assert (sunday["plays"], sunday["ms_listened"], sunday["distinct_artists"]) == (1, 0, 0)
    assert sunday["distinct_tracks"] == 1
    # a track whose metadata never arrived counts as a play but is not ranked
    assert sunday["top_tracks"] == sunday["top_artists"] == sunday["top_albums"] == sunday["top_genres"] == []
    assert (sunday["busiest_hour"], sunday["busiest_weekday"]) == (23, 7)

    week = weeks[("tokyo", "2026-11-23")]
    assert week["plays"] == 3
    assert week["ms_listened"] == 1_320_000  # 480000 + 480000 + 360000 (export ms_played capped)
    assert week["minutes_listened"] == Decimal("22.0")
    assert (week["distinct_tracks"], week["distinct_artists"]) == (2, 2)
    assert (week["days_with_plays"], week["longest_streak_days"]) == (2, 2)
    assert (week["busiest_hour"], week["busiest_weekday"], week["busiest_weekday_name"]) == (0, 2, "Tuesday")
    assert [(t["name"], t["plays"]) for t in week["top_tracks"]] == [("Says", 2), ("Heroes", 1)]
    assert [(g["name"], g["plays"]) for g in week["top_genres"]] == [("art rock", 1), ("glam rock", 1)]
    assert (week["new_tracks"], week["new_artists"]) == (2, 2)
    assert (week["previous_week_plays"], week["plays_change"]) == (1, 2)
    assert week["minutes_listened_change"] == Decimal("22.0")
