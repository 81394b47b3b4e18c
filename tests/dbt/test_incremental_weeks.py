"""The incremental weekly models: a build after changes equals a full build of the same data.

A generated history (20 listeners, a year) is built in full; then the kinds of change the
pipeline makes arrive together: one more hour of plays, a play from an export import months
back (loaded now: the weeks after it can lose a discovery), an old skip event, an ingest gap
found a month back, a user's new time zone, the metadata of a track played weeks ago, and an
artist's genres. The next build
recomputes only the weeks int_weekly_rebuild_scope names, and its marts must equal what
`dbt build --full-refresh` makes of the same rows, column by column.
"""

from __future__ import annotations

import tempfile
from argparse import Namespace
from datetime import timedelta
from pathlib import Path

import psycopg2.extras

from tests.support.postgres import private_database, sql
from weekly_wrapped.marts.dbt_runner import Warehouse, build_marts
from wrapped_dev import generate

# What the incremental models build, and wrapped_weekly, with their order (built_at differs by design).
BUILT = {
    "marts.wrapped_weekly": "user_id, week_start",
    "intermediate.int_weekly_totals": "user_id, week_start",
    "intermediate.int_weekly_top_items": "user_id, week_start, item_type, item_id",
    "intermediate.int_weekly_top_lists": "user_id, week_start",
    "intermediate.int_weekly_discoveries": "user_id, week_start",
    "intermediate.int_weekly_streaks": "user_id, week_start",
    "intermediate.int_weekly_skips": "user_id, week_start",
    "intermediate.int_weekly_pictures": "user_id, week_start",
    "intermediate.int_weekly_busiest_times": "user_id, week_start",
    "intermediate.int_listening_days": "user_id, played_on_local",
}


def _snapshot(dsn: str) -> dict[str, list[dict]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            tables = {}
            for table, order in BUILT.items():
                cur.execute(f"select * from {table} order by {order}")
                tables[table] = [{k: v for k, v in row.items() if k != "built_at"} for row in cur.fetchall()]
            return tables
    finally:
        conn.close()


def test_an_incremental_build_equals_a_full_build(postgres):
    end = generate.current_hour() - timedelta(hours=1)
    with private_database(postgres.dsn, prefix="wrapped_incremental", schema=True) as (name, dsn):
        warehouse = Warehouse(postgres.host, postgres.port, postgres.user, postgres.password, name)
        artifacts = Path(tempfile.mkdtemp(prefix="wrapped-incremental-"))

        def build(*args: str) -> None:
            build_marts(warehouse, artifacts_dir=artifacts, extra_args=args)

        generate.main(Namespace(plays=20_000, listeners=20, years=1, end=end.isoformat(), hours=None,
                                start=None, seed=13, append=False), dsn)
        # a track played seven weeks ago whose metadata has not arrived yet
        sql(dsn, """
            insert into raw.plays (user_id, played_at, track_id, source, ingested_at, loaded_at)
            select %s, %s, 'latetrack', 'api', %s, %s
        """, (generate.listener_id(3), end - timedelta(weeks=7), end - timedelta(weeks=7),
              end - timedelta(weeks=7)))
        build()
        assert sql(dsn, "select count(*) from intermediate.int_weekly_rebuild_scope "
                        "where rebuild_from_week = '-infinity'") == [(20,)]

        # what arrives before the next build
        generate.main(Namespace(plays=40, listeners=20, years=1, end=None, hours=1, start=end.isoformat(),
                                seed=14, append=True), dsn)
        old_play_user, skip_user, moved_user, gap_user = (generate.listener_id(u) for u in (1, 2, 4, 6))
        sql(dsn, "insert into app.ingest_gaps (user_id, gap_from, gap_to) values (%s, %s, %s)",
            (gap_user, end - timedelta(days=30, hours=5), end - timedelta(days=30)))
        (never_played,), = sql(dsn, """
            select track_id from raw.tracks
            where track_id not in (select track_id from raw.plays where user_id = %s)
            order by track_id limit 1
        """, (old_play_user,))
        sql(dsn, """
            insert into raw.plays (user_id, played_at, track_id, source, ms_played, ingested_at)
            values (%s, %s, %s, 'export', 185000, now())
        """, (old_play_user, end - timedelta(days=150), never_played))
        (skipped,), = sql(dsn, "select track_id from raw.tracks order by track_id desc limit 1")
        sql(dsn, """
            insert into raw.plays (user_id, played_at, track_id, source, ms_played, ingested_at)
            values (%s, %s, %s, 'export', 4000, now())
        """, (skip_user, end - timedelta(days=200, minutes=3), skipped))
        sql(dsn, "update app.users set time_zone = 'Pacific/Kiritimati' where user_id = %s", (moved_user,))
        (album_id, artist_id), = sql(dsn, "select album_id, artist_ids[1] from raw.tracks limit 1")
        sql(dsn, """
            insert into raw.tracks (track_id, name, duration_ms, album_id, artist_ids, fetched_at)
            values ('latetrack', 'Late Track', 200000, %s, array[%s], now())
        """, (album_id, artist_id))
        # genres of an artist one listener played (an artist played by all would rebuild everyone's weeks)
        (genre_artist, genre_user), = sql(dsn, """
            select t.artist_ids[1], min(p.user_id) from raw.plays p join raw.tracks t using (track_id)
            group by 1 having count(distinct p.user_id) = 1 order by 1 limit 1
        """)
        sql(dsn, """
            insert into app.artist_genres (artist_id, artist_name, genres, status)
            values (%s, 'Artist', array['lo-fi testing'], 'found')
            on conflict (artist_id) do update set genres = excluded.genres, fetched_at = now()
        """, (genre_artist,))

        build()
        scope = dict(sql(dsn, "select user_id, rebuild_from_week::text from intermediate.int_weekly_rebuild_scope"))
        assert scope[moved_user] == "-infinity"
        assert scope[old_play_user] <= str((end - timedelta(days=151)).date())
        assert scope[skip_user] <= str((end - timedelta(days=200)).date())
        assert scope[gap_user] <= str((end - timedelta(days=30)).date())
        # the hour's plays alone rebuild a week or two, not the user's year
        hour_only = [user for user in scope if user not in (old_play_user, skip_user, moved_user, gap_user,
                                                            genre_user, generate.listener_id(3))]
        assert hour_only and all(scope[user] >= str((end - timedelta(days=14)).date()) for user in hour_only)
        incremental = _snapshot(dsn)

        build("--full-refresh")
        full = _snapshot(dsn)
        for table in BUILT:
            assert len(incremental[table]) == len(full[table]), table
            assert incremental[table] == full[table], table

        # no new rows: what was loaded in the last hour is looked at again (fct_plays' overlap
        # for late commits), and recomputing it changes nothing
        build()
        again = dict(sql(dsn, "select user_id, rebuild_from_week::text from intermediate.int_weekly_rebuild_scope"))
        assert all(again[user] >= str((end - timedelta(days=14)).date()) for user in set(again) & set(hour_only))
        assert _snapshot(dsn) == full
