"""An hourly build empties a day whose one play moved past midnight: the export's copy of a
play ended at 23:59:55, the API's copy, polled later, at 00:00:03. They are one play, kept as
the API's (the api row wins), on the next UTC day; the day before holds nothing of it."""

from __future__ import annotations

import datetime as dt

UTC = dt.timezone.utc
# lisbon has no other play on these days (listening_history: its plays are in November)
EXPORT_COPY = ("lisbon", dt.datetime(2026, 10, 4, 23, 59, 55, tzinfo=UTC), "t_svefn", "export", 200_000)
API_COPY = ("lisbon", dt.datetime(2026, 10, 5, 0, 0, 3, tzinfo=UTC), "t_svefn", "api", None)
COLUMNS = "play_id, user_id, track_id, play_source, ms_played, played_on_utc, played_at, source_rows"


def _insert(conn, user_id, played_at, track_id, source, ms_played) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "insert into raw.plays (user_id, played_at, track_id, source, ms_played, ingested_at)"
            " values (%s, %s, %s, %s, %s, now())",
            (user_id, played_at, track_id, source, ms_played),
        )


def _plays_around_midnight(run) -> list[tuple]:
    rows = run.rows(
        "select played_on_utc, played_at, play_source, ms_played, source_rows from marts.fct_plays"
        " where user_id = 'lisbon' and played_at between '2026-10-04 00:00+00' and '2026-10-06 00:00+00'"
        " order by played_at"
    )
    return [tuple(row.values()) for row in rows]


def test_a_play_whose_kept_copy_moves_past_midnight_leaves_its_old_day(dbt_built):
    conn = dbt_built.connect()
    try:
        _insert(conn, *EXPORT_COPY)
        dbt_built.dbt("run", "--select", "fct_plays")
        assert _plays_around_midnight(dbt_built) == [
            (dt.date(2026, 10, 4), EXPORT_COPY[1], "export", 200_000, 1),
        ]

        _insert(conn, *API_COPY)
        dbt_built.dbt("run", "--select", "fct_plays")
        assert _plays_around_midnight(dbt_built) == [
            (dt.date(2026, 10, 5), API_COPY[1], "api", 200_000, 2),
        ]

        incremental, full = dbt_built.rows_then_rebuilt_whole("fct_plays", COLUMNS, "play_id")
        assert full == incremental
    finally:
        with conn.cursor() as cur:
            cur.execute(
                "delete from raw.plays where user_id = 'lisbon' and played_at in (%s, %s)",
                (EXPORT_COPY[1], API_COPY[1]),
            )
        dbt_built.dbt("run", "--select", "fct_plays", "--full-refresh")
