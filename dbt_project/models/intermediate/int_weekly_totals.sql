{#
    Each user's weeks with at least one play: the week itself (Monday 00:00 in the user's own
    time zone, as dates and as instants) and its totals: plays, listened time, distinct tracks
    and distinct credited artists.
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

play_totals as (

    select
        user_id,
        week_start,
        count(*) as plays,
        sum(ms_listened) as ms_listened,
        count(distinct track_id) as distinct_tracks

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
        coalesce(artist_totals.distinct_artists, 0)::int as distinct_artists

    from play_totals
    inner join users
        on play_totals.user_id = users.user_id
    left join artist_totals
        on play_totals.user_id = artist_totals.user_id
        and play_totals.week_start = artist_totals.week_start

)

select * from final
