"""The real `dbt build` over a small known history: hand-computed numbers of the marts.

The history and the arithmetic behind every number are in listening_history.py.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

OPEN = "https://open.spotify.com/"
OPERA, HEROES = "https://i.scdn.co/image/opera", "https://i.scdn.co/image/heroes"
BERLIN_WEEK_2 = [
    {"rank": 1, "id": "t_bohemian", "name": "Bohemian Rhapsody", "artists": "Queen", "plays": 3, "minutes": 15.0,
     "image_url": OPERA, "spotify_url": OPEN + "track/t_bohemian"},
    {"rank": 2, "id": "t_pressure", "name": "Under Pressure", "artists": "Queen, David Bowie", "plays": 2,
     "minutes": 5.0, "image_url": OPERA, "spotify_url": OPEN + "track/t_pressure"},
    # one play each: more minutes first
    {"rank": 3, "id": "t_heroes", "name": "Heroes", "artists": "David Bowie", "plays": 1, "minutes": 3.3,
     "image_url": HEROES, "spotify_url": OPEN + "track/t_heroes"},
    {"rank": 4, "id": "t_says", "name": "Says", "artists": "Nils Frahm", "plays": 1, "minutes": 1.7,
     "image_url": None, "spotify_url": OPEN + "track/t_says"},
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
        ("berlin", "2026-08-31"),  # the exported play that starts berlin's history
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
    assert [(a["name"], a["plays"], a["minutes"], a["image_url"], a["spotify_url"]) for a in week["top_artists"]] == [
        ("Queen", 5, 20.0, None, OPEN + "artist/a_queen"),  # Bohemian x3 + Under Pressure x2
        ("David Bowie", 3, 8.3, "https://i.scdn.co/image/bowie", OPEN + "artist/a_bowie"),  # Heroes + Pressure x2
        ("Nils Frahm", 1, 1.7, None, OPEN + "artist/a_nils"),
    ]
    assert [(a["name"], a["artists"], a["plays"], a["image_url"], a["spotify_url"]) for a in week["top_albums"]] == [
        ("A Night at the Opera", "Queen", 5, OPERA, OPEN + "album/al_opera"),
        ("Heroes", "David Bowie", 1, HEROES, OPEN + "album/al_heroes"),  # ties with Spaces on plays, more minutes
        ("Spaces", "Nils Frahm", 1, None, OPEN + "album/al_spaces"),
    ]
    # a play counts once per genre even when both its artists are glam rock; Nils has none
    assert [(g["name"], g["plays"], g["image_url"], g["spotify_url"]) for g in week["top_genres"]] == [
        ("glam rock", 6, None, None),
        ("rock", 5, None, None),
        ("art rock", 3, None, None),
    ]


def test_discoveries_only_with_eight_whole_weeks_of_history(weeks):
    exported = weeks[("berlin", "2026-08-31")]
    assert exported["history_known_since"] == dt.datetime(2026, 8, 31, 8, tzinfo=dt.timezone.utc)
    # first whole week 09-07, + 8 weeks = 11-02: nine weeks to wait
    assert (exported["discoveries_available"], exported["weeks_until_discoveries"]) == (False, 9)
    assert (exported["new_tracks"], exported["new_artists"], exported["top_new_artists"]) == (None, None, [])

    first, second = weeks[("berlin", "2026-11-09")], weeks[("berlin", "2026-11-16")]
    assert (first["discoveries_available"], first["weeks_until_discoveries"]) == (True, 0)
    assert (first["new_tracks"], first["new_artists"]) == (1, 1)  # Under Pressure, Queen: Heroes is not new
    assert (second["new_tracks"], second["new_artists"]) == (2, 1)  # Bohemian, Says; Nils Frahm
    assert second["top_new_artists"] == [{"rank": 1, "id": "a_nils", "name": "Nils Frahm", "plays": 1}]

    tokyo = weeks[("tokyo", "2026-11-23")]  # history since the day before: no claim at all
    assert (tokyo["discoveries_available"], tokyo["weeks_until_discoveries"]) == (False, 8)
    assert (tokyo["new_tracks"], tokyo["new_artists"], tokyo["top_new_artists"]) == (None, None, [])


def test_change_vs_week_before_only_when_it_is_covered(weeks):
    first, second = weeks[("berlin", "2026-11-09")], weeks[("berlin", "2026-11-16")]
    assert first["previous_week_status"] == "no_plays"  # 11-02: known, silent
    assert (first["previous_week_plays"], first["plays_change"]) == (0, 2)
    assert first["previous_week_minutes_listened"] == Decimal("0.0")
    assert first["minutes_listened_change"] == Decimal("10.0")
    assert second["previous_week_status"] == "compared"
    assert second["previous_week_plays"] == 2
    assert second["previous_week_minutes_listened"] == Decimal("10.0")
    assert second["plays_change"] == 5
    assert second["minutes_listened_change"] == Decimal("15.0")
    assert weeks[("berlin", "2026-08-31")]["previous_week_status"] == "not_known"
    # tokyo's history starts on the Sunday of 11-16: that week is only partly known
    tokyo = weeks[("tokyo", "2026-11-23")]
    assert tokyo["previous_week_status"] == "partial"
    assert [tokyo[c] for c in ("previous_week_plays", "previous_week_minutes_listened", "plays_change",
                               "minutes_listened_change")] == [None] * 4


def test_has_gap_only_for_the_overlapping_week(weeks):
    week = weeks[("berlin", "2026-11-16")]
    assert week["has_gap"] is True
    # the 1-hour gap; 7 plays in 167 covered hours: 7 / 167 = 0.04, rounded 0
    assert (week["week_hours"], week["missed_hours"], week["estimated_missed_plays"]) == (Decimal("168.0"), Decimal("1.0"), 0)
    assert weeks[("berlin", "2026-11-09")]["has_gap"] is False
    assert weeks[("berlin", "2026-11-09")]["missed_hours"] == Decimal("0.0")
    assert weeks[("tokyo", "2026-11-23")]["has_gap"] is False
    # tokyo is known from Sunday 23:00 JST: 167 of the week's 168 hours missed, 1 play in 1 hour
    sunday = weeks[("tokyo", "2026-11-16")]
    assert (sunday["missed_hours"], sunday["estimated_missed_plays"]) == (Decimal("167.0"), 167)


def test_pictures_and_streaks(weeks):
    week = weeks[("berlin", "2026-11-16")]
    assert week["minutes_by_day"] == [
        {"date": "2026-11-16", "minutes": 8.3}, {"date": "2026-11-17", "minutes": 9.0},
        {"date": "2026-11-18", "minutes": 0.0}, {"date": "2026-11-19", "minutes": 1.7},
        {"date": "2026-11-20", "minutes": 0.0}, {"date": "2026-11-21", "minutes": 0.0},
        {"date": "2026-11-22", "minutes": 6.0},
    ]
    clock = week["listening_clock"]
    assert [len(day) for day in clock] == [24] * 7
    assert (clock[0][8], clock[1][8], clock[3][21], clock[6][23]) == (8.3, 9.0, 1.7, 6.0)
    assert sum(map(sum, clock)) == pytest.approx(25.0)
    assert (week["longest_streak_days"], week["longest_streak_running_days"]) == (2, 2)


def test_tokyo_weeks_unknown_track_and_missing_genres(weeks):
    sunday = weeks[("tokyo", "2026-11-16")]
    # a track still looked up: a play of 3.5 min (estimated), not counted as a track or ranked
    assert (sunday["plays"], sunday["ms_listened"], sunday["distinct_artists"]) == (1, 210_000, 0)
    assert (sunday["distinct_tracks"], sunday["plays_pending_metadata"], sunday["plays_estimated_minutes"]) == (0, 1, 1)
    assert sunday["top_tracks"] == sunday["top_artists"] == sunday["top_albums"] == sunday["top_genres"] == []
    assert (sunday["busiest_hour"], sunday["busiest_weekday"]) == (23, 7)

    week = weeks[("tokyo", "2026-11-23")]
    assert week["plays"] == 3
    assert week["ms_listened"] == 1_360_000  # 480000 + 480000 + 400000 (the export's ms_played)
    assert week["minutes_listened"] == Decimal("22.7")
    assert (week["plays_estimated_minutes"], week["plays_pending_metadata"]) == (2, 0)
    assert (week["distinct_tracks"], week["distinct_artists"]) == (2, 2)
    assert (week["days_with_plays"], week["longest_streak_days"]) == (2, 2)
    assert (week["busiest_hour"], week["busiest_weekday"], week["busiest_weekday_name"]) == (0, 2, "Tuesday")
    assert [(t["name"], t["plays"]) for t in week["top_tracks"]] == [("Says", 2), ("Heroes", 1)]
    assert [(g["name"], g["plays"]) for g in week["top_genres"]] == [("art rock", 1), ("glam rock", 1)]
    # Sunday 23:00 then Monday, Tuesday: 2 days this week, 3 running
    assert (week["longest_streak_days"], week["longest_streak_running_days"]) == (2, 3)
