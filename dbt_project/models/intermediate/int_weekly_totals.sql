{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{{ delete_weeks_to_rebuild(this) }}"
    )
}}
-- depends_on: {{ ref('int_weekly_rebuild_scope') }}

{#
    Each user's weeks with at least one play: the week itself (Monday 00:00 in the user's own
    time zone, as dates and as instants) and its totals: plays, listened time, distinct known
    tracks and artists (a track or artist whose metadata has not arrived is not counted: the
    plays of tracks still being looked up are plays_pending_metadata), and how many plays'
    minutes are estimated (int_plays_localized).
#}

with

plays as (

    select plays.*
    from {{ ref('int_plays_localized') }} as plays
    {{- plays_to_rebuild('plays') }}

),

users as (

    select * from {{ ref('dim_user') }}

),

track_artists as (

    select * from {{ ref('bridge_track_artist') }}

),

artists as (

    select * from {{ ref('dim_artist') }}

),

play_totals as (

    select
        user_id,
        week_start,
        count(*) as plays,
        sum(ms_listened) as ms_listened,
        count(distinct track_id) filter (where has_track_metadata) as distinct_tracks,
        count(*) filter (where is_minutes_estimated) as plays_estimated_minutes,
        count(*) filter (where not has_track_metadata) as plays_pending_metadata

    from plays
    group by user_id, week_start

),

artist_totals as (

    select
        plays.user_id,
        plays.week_start,
        count(distinct track_artists.artist_id) as distinct_artists

    from plays
    inner join track_artists
        on plays.track_id = track_artists.track_id
    inner join artists
        on track_artists.artist_id = artists.artist_id
    where artists.has_metadata
    group by plays.user_id, plays.week_start

),

final as (

    select
        ---------- the week, in the user's time zone
        play_totals.user_id,
        play_totals.week_start,
        play_totals.week_start + 6 as week_end,
        users.time_zone,
        play_totals.week_start::timestamp at time zone users.time_zone as week_start_at,
        (play_totals.week_start + 7)::timestamp at time zone users.time_zone as week_end_at,

        ---------- totals
        play_totals.plays::int as plays,
        play_totals.ms_listened::bigint as ms_listened,
        round(play_totals.ms_listened / 60000.0, 1)::numeric(12, 1) as minutes_listened,
        play_totals.distinct_tracks::int as distinct_tracks,
        coalesce(artist_totals.distinct_artists, 0)::int as distinct_artists,
        play_totals.plays_estimated_minutes::int as plays_estimated_minutes,
        play_totals.plays_pending_metadata::int as plays_pending_metadata

    from play_totals
    inner join users
        on play_totals.user_id = users.user_id
    left join artist_totals
        on play_totals.user_id = artist_totals.user_id
        and play_totals.week_start = artist_totals.week_start

)

select * from final
