{#
    One row per user and week with at least one play. A week starts Monday 00:00 in the
    user's own time zone (dim_user.time_zone). Read by the weekly recap e-mail: column
    names are a contract (see wrapped_weekly.yml).
#}

with

plays as (

    select * from {{ ref('int_plays_localized') }}

),

users as (

    select * from {{ ref('dim_user') }}

),

track_artists as (

    select * from {{ ref('bridge_track_artist') }}

),

top_items as (

    select * from {{ ref('int_weekly_top_items') }}

),

streaks as (

    select * from {{ ref('int_weekly_streaks') }}

),

discoveries as (

    select * from {{ ref('int_weekly_discoveries') }}

),

ingest_gaps as (

    select * from {{ ref('stg_app__ingest_gaps') }}

),

weekly_totals as (

    select
        user_id,
        week_start,
        count(*) as plays,
        sum(ms_listened) as ms_listened,
        count(distinct track_id) as distinct_tracks

    from plays
    group by user_id, week_start

),

weekly_artists as (

    select
        plays.user_id,
        plays.week_start,
        count(distinct track_artists.artist_id) as distinct_artists

    from plays
    inner join track_artists
        on plays.track_id = track_artists.track_id
    group by plays.user_id, plays.week_start

),

hours_ranked as (

    select
        user_id,
        week_start,
        played_hour_local,
        row_number() over (
            partition by user_id, week_start
            order by count(*) desc, played_hour_local
        ) as hour_rank

    from plays
    group by user_id, week_start, played_hour_local

),

weekdays_ranked as (

    select
        user_id,
        week_start,
        played_weekday_local,
        row_number() over (
            partition by user_id, week_start
            order by count(*) desc, played_weekday_local
        ) as weekday_rank

    from plays
    group by user_id, week_start, played_weekday_local

),

top_lists as (

    select
        user_id,
        week_start,
        {% for item_type in ['track', 'artist', 'album', 'genre'] %}
        coalesce(
            jsonb_agg(
                jsonb_build_object(
                    'rank', item_rank,
                    'id', item_id,
                    'name', item_name,
                    'artists', artist_names,
                    'plays', plays,
                    'minutes', round(ms_listened / 60000.0, 1)
                )
                order by item_rank
            ) filter (where item_type = '{{ item_type }}'),
            '[]'::jsonb
        ) as top_{{ item_type }}s{{ "," if not loop.last }}
        {% endfor %}

    from top_items
    group by user_id, week_start

),

weeks as (

    select
        weekly_totals.*,
        users.time_zone,
        weekly_totals.week_start::timestamp at time zone users.time_zone as week_start_at,
        (weekly_totals.week_start + 7)::timestamp at time zone users.time_zone as week_end_at

    from weekly_totals
    inner join users
        on weekly_totals.user_id = users.user_id

),

weeks_with_gaps as (

    select distinct
        weeks.user_id,
        weeks.week_start

    from weeks
    inner join ingest_gaps
        on weeks.user_id = ingest_gaps.user_id
        and ingest_gaps.gap_from < weeks.week_end_at
        and ingest_gaps.gap_to > weeks.week_start_at

),

final as (

    select

        ----------  ids
        weeks.user_id || '|' || weeks.week_start::text as user_week_id,
        weeks.user_id,

        ---------- the week, in the user's time zone
        weeks.week_start,
        weeks.week_start + 6 as week_end,
        weeks.time_zone,
        weeks.week_start_at,
        weeks.week_end_at,

        ---------- totals
        weeks.plays::int as plays,
        weeks.ms_listened::bigint as ms_listened,
        round(weeks.ms_listened / 60000.0, 1)::numeric(12, 1) as minutes_listened,
        weeks.distinct_tracks::int as distinct_tracks,
        coalesce(weekly_artists.distinct_artists, 0)::int as distinct_artists,

        ---------- habits
        streaks.days_with_plays,
        streaks.longest_streak_days,
        busiest_hours.played_hour_local as busiest_hour,
        busiest_weekdays.played_weekday_local as busiest_weekday,
        to_char(date '2024-01-01' + (busiest_weekdays.played_weekday_local - 1), 'FMDay') as busiest_weekday_name,

        ---------- top 5s
        coalesce(top_lists.top_tracks, '[]'::jsonb) as top_tracks,
        coalesce(top_lists.top_artists, '[]'::jsonb) as top_artists,
        coalesce(top_lists.top_albums, '[]'::jsonb) as top_albums,
        coalesce(top_lists.top_genres, '[]'::jsonb) as top_genres,

        ---------- discoveries
        coalesce(discoveries.new_tracks, 0) as new_tracks,
        coalesce(discoveries.new_artists, 0) as new_artists,
        coalesce(discoveries.top_new_artists, '[]'::jsonb) as top_new_artists,

        ---------- change vs the week before
        coalesce(previous_weeks.plays, 0)::int as previous_week_plays,
        round(coalesce(previous_weeks.ms_listened, 0) / 60000.0, 1)::numeric(12, 1) as previous_week_minutes_listened,
        (weeks.plays - coalesce(previous_weeks.plays, 0))::int as plays_change,
        round((weeks.ms_listened - coalesce(previous_weeks.ms_listened, 0)) / 60000.0, 1)::numeric(12, 1) as minutes_listened_change,

        ---------- data quality
        weeks_with_gaps.user_id is not null as has_gap

    from weeks
    left join weekly_totals as previous_weeks
        on weeks.user_id = previous_weeks.user_id
        and weeks.week_start - 7 = previous_weeks.week_start
    left join weekly_artists
        on weeks.user_id = weekly_artists.user_id
        and weeks.week_start = weekly_artists.week_start
    left join streaks
        on weeks.user_id = streaks.user_id
        and weeks.week_start = streaks.week_start
    left join hours_ranked as busiest_hours
        on weeks.user_id = busiest_hours.user_id
        and weeks.week_start = busiest_hours.week_start
        and busiest_hours.hour_rank = 1
    left join weekdays_ranked as busiest_weekdays
        on weeks.user_id = busiest_weekdays.user_id
        and weeks.week_start = busiest_weekdays.week_start
        and busiest_weekdays.weekday_rank = 1
    left join top_lists
        on weeks.user_id = top_lists.user_id
        and weeks.week_start = top_lists.week_start
    left join discoveries
        on weeks.user_id = discoveries.user_id
        and weeks.week_start = discoveries.week_start
    left join weeks_with_gaps
        on weeks.user_id = weeks_with_gaps.user_id
        and weeks.week_start = weeks_with_gaps.week_start

)

select * from final
