"""Every number of marts.wrapped_weekly is true for the listener (docs/recap.md).

Listening histories in the raw shapes (recap_truth.py: four users in four time zones, a DST
week, Samoa's 144-hour week, a short history, an imported-only user, an API-only user, gaps,
overlapping plays, copies of one play, skips, plays waiting for metadata) are loaded into a
private database; the real dbt project is built there, and each row is compared, column by
column, with the same numbers worked out in plain Python from the raw rows.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import psycopg2
import psycopg2.extras
import pytest

from recap_helpers import mart_contract_columns
from recap_truth import build_history, expected_weeks, seed
from tests.support.postgres import private_database

from weekly_wrapped.marts.dbt_runner import Warehouse, build_marts

RECAP_MD = Path(__file__).resolve().parents[2] / "docs" / "recap.md"

# Columns of the mart this test leaves to others, and why.
NOT_COMPARED = {
    "user_week_id": "the key, user_id || '|' || week_start (tests/dbt)",
    "user_id": "the key",
    "week_start": "the key",
    "busiest_weekday_name": "the name of busiest_weekday (tests/dbt)",
    "skip_events": "skips: tests/dbt/test_skips_and_name_keys.py",
    "skip_rate": "skips: tests/dbt/test_skips_and_name_keys.py",
    "top_skipped_tracks": "skips: tests/dbt/test_skips_and_name_keys.py",
    "built_at": "when the build ran, not a fact about listening (tests/dbt/test_incremental_weeks.py)",
}


@pytest.fixture(scope="module")
def history():
    return build_history()


@pytest.fixture(scope="module")
def expected(history):
    return expected_weeks(history)


@pytest.fixture(scope="module")
def mart(postgres, history, tmp_path_factory) -> dict[tuple[str, dt.date], dict]:
    """marts.wrapped_weekly as the real dbt project builds it from `history`."""
    with private_database(postgres.dsn, "wrapped_recap_truth", schema=True) as (name, dsn):
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        try:
            seed(conn, history)
            warehouse = Warehouse(postgres.host, postgres.port, postgres.user, postgres.password, name)
            # models and their data tests; the unit tests run in tests/dbt
            statuses = build_marts(warehouse, artifacts_dir=tmp_path_factory.mktemp("dbt_truth"),
                             extra_args=("--exclude-resource-type", "unit_test"), log=lambda line: None)
            assert set(statuses) <= {"success", "pass"}, statuses
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute("select * from marts.wrapped_weekly")
                return {(row["user_id"], row["week_start"]): dict(row) for row in cur.fetchall()}
        finally:
            conn.close()


def test_the_history_holds_every_case_the_contract_names(expected):
    """The generated history really contains what the comparison is meant to cover."""
    weeks = list(expected.values())
    assert expected[("apia", dt.date(2011, 12, 26))]["week_hours"] == Decimal("144.0")
    assert expected[("apia", dt.date(2011, 12, 26))]["minutes_by_day"][4] == {"date": "2011-12-30", "minutes": 0.0}
    assert expected[("berlin", dt.date(2026, 10, 19))]["week_hours"] == Decimal("169.0")
    assert expected[("new_york", dt.date(2026, 10, 26))]["week_hours"] == Decimal("169.0")
    assert {w["previous_week_status"] for w in weeks} == {"compared", "no_plays", "partial", "not_known"}
    assert {w["discoveries_available"] for w in weeks} == {True, False}
    assert any(w["discoveries_available"] and w["new_tracks"] and w["top_new_artists"] for w in weeks)
    assert all(not w["discoveries_available"] for (user, _), w in expected.items() if user == "tokyo")
    assert any(w["plays_pending_metadata"] for w in weeks)
    assert any(0 < w["plays_estimated_minutes"] < w["plays"] for w in weeks)  # berlin's merged export copy
    assert any(w["has_gap"] and w["missed_hours"] and w["estimated_missed_plays"] for w in weeks)
    assert any(w["longest_streak_running_days"] > w["longest_streak_days"] for w in weeks)
    assert any(e["spotify_url"] is None for w in weeks for e in w["top_albums"])  # a `name:` album
    assert not any(e["name"].startswith("Unknown") for w in weeks
                   for kind in ("top_tracks", "top_artists", "top_albums") for e in w[kind])


def test_every_contract_column_is_compared_or_named(expected):
    compared = set(next(iter(expected.values())))
    contract = set(mart_contract_columns())
    assert compared | set(NOT_COMPARED) == contract
    # and every mart column docs/recap.md names is among those compared
    named = set(re.findall(r"`([a-z_]+)`", RECAP_MD.read_text())) & contract
    assert named <= compared, named - compared


def test_one_row_per_user_and_local_week(mart, expected):
    assert sorted(mart) == sorted(expected)


@pytest.mark.parametrize("user_id", ["berlin", "new_york", "tokyo", "apia"])
def test_every_number_is_the_independent_computation(mart, expected, user_id):
    differences = []
    for key in sorted(k for k in expected if k[0] == user_id):
        for column, value in expected[key].items():
            if mart[key][column] != value:
                differences.append(f"{key[1]} {column}: mart {mart[key][column]!r} != expected {value!r}")
    assert not differences, "\n".join(differences[:20])
