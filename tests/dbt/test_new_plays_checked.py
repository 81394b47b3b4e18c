"""The data tests on raw plays read the rows loaded since the last build, not ten million again."""

from __future__ import annotations

import pytest

from weekly_wrapped.marts.dbt_runner import DbtError

BAD_PLAY = ("insert into raw.plays (user_id, played_at, track_id, source, ms_played, ingested_at, loaded_at)"
            " values (%s, now() - interval '3 days', 'track-bad', 'export', -5, now(), %s)")


def test_a_bad_play_loaded_since_the_last_build_fails_its_test_an_older_one_is_not_read_again(dbt_built):
    conn = dbt_built.connect()
    try:
        with conn.cursor() as cur:
            # Loaded before the build that ran: that build's tests were the ones to read it.
            cur.execute(BAD_PLAY, ("bad-before-the-build", "-infinity"))
        statuses = dbt_built.dbt("test", "--select", "stg_spotify__plays")
        assert set(statuses) == {"pass"}, statuses

        with conn.cursor() as cur:
            cur.execute(BAD_PLAY, ("bad-since-the-build", "infinity"))
        with pytest.raises(DbtError) as failed:
            dbt_built.dbt("test", "--select", "stg_spotify__plays")
        failures = [line for line in failed.value.output_tail if " FAIL " in line]
        assert len(failures) == 1 and "ms_played_is_null_or_ms_played_0" in failures[0], failed.value.output_tail
    finally:
        with conn.cursor() as cur:
            cur.execute("delete from raw.plays where user_id like 'bad-%'")
