"""fct_skips is incremental: an hourly build rebuilds only the days with new skip events, and
ends where a full build would."""

from __future__ import annotations

import datetime as dt

from listening_history import RESOLVED_KEY

UTC = dt.timezone.utc
# An account-data skip (the end truncated to the minute) loaded in one build, and its
# extended-history copy (the end to the second) in the next: one skip event, the copy.
ACCOUNT_SKIP = ("lisbon", dt.datetime(2026, 11, 20, 23, 59, tzinfo=UTC), RESOLVED_KEY)
EXTENDED_COPY = ("lisbon", dt.datetime(2026, 11, 20, 23, 59, 25, tzinfo=UTC), "t_svefn")
SKIP_MS = 4_000
COLUMNS = "skip_id, user_id, track_id, track_name_key, ms_played, skipped_on_utc, skipped_at, loaded_at"


def _insert_skip(conn, user_id, played_at, track_id) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "insert into raw.plays (user_id, played_at, track_id, source, ms_played, ingested_at)"
            " values (%s, %s, %s, 'export', %s, now())",
            (user_id, played_at, track_id, SKIP_MS),
        )


def _skips_around_midnight(run) -> list[tuple]:
    rows = run.rows(
        "select skipped_at, track_id from marts.fct_skips where user_id = 'lisbon'"
        " and skipped_at between '2026-11-20 23:00+00' and '2026-11-21 00:00+00' order by skipped_at"
    )
    return [(row["skipped_at"], row["track_id"]) for row in rows]


def test_new_skips_are_added_and_a_later_copy_replaces_its_account_row(dbt_built):
    conn = dbt_built.connect()
    try:
        _insert_skip(conn, *ACCOUNT_SKIP)
        dbt_built.dbt("run", "--select", "fct_skips")
        assert _skips_around_midnight(dbt_built) == [(ACCOUNT_SKIP[1], "t_svefn")]

        _insert_skip(conn, *EXTENDED_COPY)
        dbt_built.dbt("run", "--select", "fct_skips")
        # the account row written by the build before is gone
        assert _skips_around_midnight(dbt_built) == [(EXTENDED_COPY[1], "t_svefn")]

        incremental, full = dbt_built.rows_then_rebuilt_whole("fct_skips", COLUMNS, "skip_id")
        assert full == incremental
    finally:
        with conn.cursor() as cur:
            cur.execute(
                "delete from raw.plays where user_id = 'lisbon' and played_at in (%s, %s)",
                (ACCOUNT_SKIP[1], EXTENDED_COPY[1]),
            )
        dbt_built.dbt("run", "--select", "fct_skips", "--full-refresh")
