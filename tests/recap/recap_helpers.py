"""Helpers for the recap tests: sample marts.wrapped_weekly rows, users and weeks in a test database.

A plain module rather than conftest, so test files can import it by a unique name.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import yaml

from wrapped_dev.config import REPO_ROOT

MART_YML = REPO_ROOT / "dbt_project" / "models" / "marts" / "wrapped_weekly.yml"


def sample_clock() -> list[list[float]]:
    """7 x 24 minutes by local hour (Monday first): mornings on weekdays, late Friday and Saturday."""
    clock = [[0.0] * 24 for _ in range(7)]
    for day in range(5):
        clock[day][8] = 12.5 + day
        clock[day][18] = 6.0
    clock[4][21] = 42.0
    clock[4][22] = 30.5
    clock[5][22] = 35.0
    clock[5][23] = 20.0
    clock[6][11] = 15.4
    clock[2][19], clock[2][20] = 40.0, 27.0  # the hours add up to minutes_listened, 312.4
    return clock


def sample_minutes_by_day(week_start: date = date(2026, 11, 16)) -> list[dict]:
    """Minutes per day matching sample_clock(), Monday first."""
    return [
        {"date": (week_start + timedelta(days=i)).isoformat(), "minutes": round(sum(row), 1)}
        for i, row in enumerate(sample_clock())
    ]


def make_row(**overrides) -> dict:
    """One marts.wrapped_weekly row, shaped as the model's contract (wrapped_weekly.yml),
    plus app.users' display_name, email and locale (as store.week_row joins them)."""
    row = {
        "user_week_id": "recap-user-1|2026-11-16",
        "user_id": "recap-user-1",
        "week_start": date(2026, 11, 16),
        "week_end": date(2026, 11, 22),
        "time_zone": "Europe/Berlin",
        "plays": 87,
        "ms_listened": 18_744_000,
        "minutes_listened": Decimal("312.4"),
        "distinct_tracks": 61,
        "distinct_artists": 23,
        "days_with_plays": 6,
        "longest_streak_days": 4,
        "busiest_hour": 21,
        "busiest_weekday": 5,
        "busiest_weekday_name": "Friday",
        "top_tracks": [
            {"rank": i + 1, "id": f"t{i}", "name": name, "artists": artists, "plays": plays, "minutes": 10.5,
             "image_url": f"https://i.scdn.co/image/album-t{i}", "spotify_url": f"https://open.spotify.com/track/t{i}"}
            for i, (name, artists, plays) in enumerate(
                [
                    ("Hyperballad", "Björk", 9),
                    ("Teardrop", "Massive Attack", 8),
                    ("Glory Box", "Portishead", 7),
                    ("Unfinished Sympathy", "Massive Attack", 6),
                    ("Roads", "Portishead", 5),
                ]
            )
        ],
        "top_artists": [
            {"rank": i + 1, "id": f"a{i}", "name": name, "artists": None, "plays": plays, "minutes": minutes,
             "image_url": f"https://i.scdn.co/image/artist-a{i}", "spotify_url": f"https://open.spotify.com/artist/a{i}"}
            for i, (name, plays, minutes) in enumerate(
                [("Björk", 20, 80.5), ("Massive Attack", 17, 70.0), ("Portishead", 15, 61.2), ("Tricky", 11, 40.0),
                 ("Blink-182", 3, 8.1)]
            )
        ],
        "top_albums": [
            {"rank": 1, "id": "al1", "name": "Post", "artists": "Björk", "plays": 14, "minutes": 50.2,
             "image_url": "https://i.scdn.co/image/album-al1", "spotify_url": "https://open.spotify.com/album/al1"},
            {"rank": 2, "id": "al2", "name": "Mezzanine", "artists": "Massive Attack", "plays": 13, "minutes": 48.0,
             "image_url": "https://i.scdn.co/image/album-al2", "spotify_url": "https://open.spotify.com/album/al2"},
        ],
        "top_genres": [],
        "new_tracks": 12,
        "new_artists": 2,
        "top_new_artists": [{"rank": 1, "id": "a3", "name": "Tricky", "plays": 11}],
        "previous_week_plays": 64,
        "previous_week_minutes_listened": Decimal("250.0"),
        "plays_change": 23,
        "minutes_listened_change": Decimal("62.4"),
        "skip_events": 29,
        "skip_rate": Decimal("0.2500"),  # 29 / (87 + 29)
        "top_skipped_tracks": [
            {"rank": 1, "id": "t9", "name": "All Star", "artists": "Smash Mouth", "plays": 6, "minutes": 0.9},
            {"rank": 2, "id": "t8", "name": "Roads", "artists": "Portishead", "plays": 2, "minutes": 0.4},
        ],
        "has_gap": False,
        # what the numbers rest on (docs/recap.md)
        "history_known_since": datetime(2025, 3, 2, 9, 15, tzinfo=timezone.utc),
        "discoveries_available": True,
        "weeks_until_discoveries": 0,
        "previous_week_status": "compared",
        "plays_estimated_minutes": 0,
        "plays_pending_metadata": 0,
        "longest_streak_running_days": 4,
        "week_hours": Decimal("168.0"),
        "missed_hours": Decimal("0.0"),
        "estimated_missed_plays": 0,
        "minutes_by_day": sample_minutes_by_day(),
        "listening_clock": sample_clock(),
        "display_name": "Ada",
        "email": "ada@example.com",
        "locale": "en",
    }
    row.update(overrides)
    return row


def insert_user(conn, user_id: str, email: str, time_zone: str = "Europe/Berlin", status: str = "active",
                confirmed: bool = True) -> None:
    """A user; `confirmed`: their address is confirmed (recaps go only to confirmed addresses)."""
    with conn.cursor() as cur:
        cur.execute(
            "insert into app.users (user_id, display_name, email, time_zone, status, email_confirmed_at) "
            "values (%s, %s, %s, %s, %s, case when %s then now() end)",
            (user_id, "Ada", email, time_zone, status, confirmed),
        )


def insert_week(conn, row: dict) -> None:
    """Insert the row's mart columns (those the dbt contract declares; app.users' are left out)."""
    contract = mart_contract_columns()
    columns = [c for c in row if c in contract]
    values = [json.dumps(row[c]) if isinstance(row[c], (list, dict)) else row[c] for c in columns]
    with conn.cursor() as cur:
        cur.execute(
            f"insert into marts.wrapped_weekly ({', '.join(columns)}) values ({', '.join(['%s'] * len(columns))})",
            values,
        )


def mart_contract_columns() -> dict[str, str]:
    """{column: data_type} of marts.wrapped_weekly, from the dbt model's contract."""
    models = yaml.safe_load(MART_YML.read_text())["models"]
    model = next(m for m in models if m["name"] == "wrapped_weekly")
    return {c["name"]: c["data_type"] for c in model["columns"]}
