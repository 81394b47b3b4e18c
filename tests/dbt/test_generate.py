"""`wrapped generate` (wrapped_dev.generate): the synthetic history the dbt benchmark builds on.

One small history (6 listeners, 6,000 plays over a year) into a throwaway database, then one
more hour appended, checked for what the benchmark relies on: exact counts, rows that the
pipeline could have written (entities present, plays that never overlap, export rows with
ms_played and skips, API rows loaded after the play) and shapes like real listening.
"""

from __future__ import annotations

from argparse import Namespace
from datetime import datetime, timedelta, timezone

from tests.support.postgres import private_database, sql
from wrapped_dev import generate

END = datetime(2026, 11, 30, tzinfo=timezone.utc)


def _history(**overrides) -> Namespace:
    values = dict(plays=6000, listeners=6, years=1, end=END.isoformat(), hours=None, start=None, seed=13,
                  append=False)
    return Namespace(**{**values, **overrides})


def test_generated_history_is_exact_deterministic_and_realistic(postgres):
    shape = generate.Shape(plays=6000, listeners=6, start=END - timedelta(days=365), end=END,
                           export_until=END - timedelta(days=182))
    catalogue = generate.build_catalogue(shape.artists, shape.seed)
    zones = generate.listener_zones(shape)
    counts = generate.listener_plays(shape)
    assert sum(counts) == 6000
    assert generate.play_rows(shape, catalogue, 2, counts[2], zones[2]) == \
        generate.play_rows(shape, catalogue, 2, counts[2], zones[2])

    with private_database(postgres.dsn, prefix="wrapped_generate", schema=True) as (_, dsn):
        generate.main(_history(), dsn)
        one_more_hour = _history(plays=12, hours=1, start=END.isoformat(), seed=13, append=True)
        generate.main(one_more_hour, dsn)

        (plays, users, before_end, in_hour, loaded_now), = sql(dsn, """
            select count(*), count(distinct user_id),
                   count(*) filter (where played_at >= %s::timestamptz - interval '1 year' and played_at < %s),
                   count(*) filter (where played_at >= %s and played_at < %s::timestamptz + interval '1 hour'),
                   count(*) filter (where loaded_at > now() - interval '10 minutes')
            from raw.plays
        """, (END, END, END, END))
        assert (plays, users, before_end, in_hour, loaded_now) == (6012, 6, 6000, 12, 12)

        # every play names a track, album, artist and listener that are there
        orphans, = sql(dsn, """
            select
                (select count(*) from raw.plays p where not exists (select 1 from raw.tracks t where t.track_id = p.track_id)),
                (select count(*) from raw.tracks t where not exists (select 1 from raw.albums a where a.album_id = t.album_id)),
                (select count(*) from raw.tracks t where not exists (select 1 from raw.artists a where a.artist_id = t.artist_ids[1])),
                (select count(*) from raw.plays p where not exists (select 1 from app.users u where u.user_id = p.user_id)),
                (select count(*) from app.users u where u.time_zone not in (select name from pg_timezone_names))
        """)
        assert orphans == (0, 0, 0, 0, 0)

        # a play ends (played_at) after the previous one ended plus its own listened time
        overlapping, = sql(dsn, """
            select count(*) from (
                select p.played_at - lag(p.played_at) over (partition by p.user_id order by p.played_at)
                       as since_previous,
                       coalesce(p.ms_played, t.duration_ms) as listened_ms
                from raw.plays p join raw.tracks t using (track_id)
            ) s
            where since_previous < listened_ms * interval '1 millisecond'
        """)[0]
        assert overlapping == 0

        (exported, skips, exported_unknown_ms, api, api_known_ms, api_loaded_early), = sql(dsn, """
            select count(*) filter (where source = 'export'),
                   count(*) filter (where source = 'export' and ms_played < 30000),
                   count(*) filter (where source = 'export' and ms_played is null),
                   count(*) filter (where source = 'api'),
                   count(*) filter (where source = 'api' and ms_played is not null),
                   count(*) filter (where source = 'api' and loaded_at <= played_at)
            from raw.plays
        """)
        assert 2000 < exported < 4000 and api > 2000  # the older half came from an export
        assert 0.06 < skips / exported < 0.2
        assert (exported_unknown_ms, api_known_ms, api_loaded_early) == (0, 0, 0)

        # Zipf-like: the ten most played tracks take far more than their share of plays
        top_ten_share, distinct_tracks = sql(dsn, """
            with per_track as (select track_id, count(*) as plays from raw.plays group by track_id)
            select (select sum(plays) from (select plays from per_track order by plays desc limit 10) t)::float
                   / sum(plays), count(*)
            from per_track
        """)[0]
        assert top_ten_share > 0.05 and distinct_tracks > 500

        # a daily rhythm in local time: evenings busier than the small hours
        night, evening = sql(dsn, """
            select count(*) filter (where extract(hour from p.played_at at time zone u.time_zone) between 2 and 4),
                   count(*) filter (where extract(hour from p.played_at at time zone u.time_zone) between 18 and 20)
            from raw.plays p join app.users u using (user_id)
        """)[0]
        assert evening > 3 * night
