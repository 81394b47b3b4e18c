"""fct_plays on the real warehouse: export/API near-duplicates collapse, also incrementally."""

from __future__ import annotations

import datetime as dt

from listening_history import LATE_PLAYS, PLAYS, insert_plays


def _berlin_sunday(run):
    return run.rows(
        "select play_source, ms_played, source_rows from marts.fct_plays"
        " where user_id = 'berlin' and track_id = 't_bohemian' and played_on_utc = '2026-11-22'"
    )


def _plays_of_berlin_and_tokyo(run) -> int:
    """fct_plays' rows of listening_history's PLAYS (lisbon's exported week is counted elsewhere)."""
    [row] = run.rows("select count(*) as plays from marts.fct_plays where user_id in ('berlin', 'tokyo')")
    return row["plays"]


def test_near_duplicates_are_one_play(dbt_built):
    rows = dbt_built.rows(
        "select play_source, ms_played, source_rows, played_at from marts.fct_plays"
        " where user_id = 'berlin' and track_id = 't_heroes' and played_on_utc = '2026-11-16'"
    )
    assert rows == [{
        "play_source": "api",
        "ms_played": 200_000,
        "source_rows": 2,
        "played_at": dt.datetime(2026, 11, 16, 7, tzinfo=dt.timezone.utc),
    }]


def test_incremental_load_collapses_a_late_export_copy(dbt_built):
    count = _plays_of_berlin_and_tokyo(dbt_built)
    assert count == len(PLAYS) - 1
    assert _berlin_sunday(dbt_built) == [{"play_source": "api", "ms_played": None, "source_rows": 1}]

    insert_plays(dbt_built.connect(), LATE_PLAYS)
    statuses = dbt_built.dbt("build", "--select", "fct_plays")
    assert set(statuses) <= {"success", "pass"}, statuses

    count = _plays_of_berlin_and_tokyo(dbt_built)
    assert count == len(PLAYS) - 1 + 1  # the export copy joined its api play; one new play
    assert _berlin_sunday(dbt_built) == [{"play_source": "api", "ms_played": 150_000, "source_rows": 2}]
