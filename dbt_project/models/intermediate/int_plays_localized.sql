{#
    Each play placed in its listener's own time zone: local day, hour, weekday and week
    (weeks start Monday 00:00 local time), and how long it was listened to.

    One minutes rule, whatever the source (export, API, demo): ms_played when known, else an
    estimate (the track's length, or var('estimated_play_ms') while the length is unknown);
    either is capped by the time since the previous play ended (played_at is the END of a
    play), so overlapping plays never count twice.
#}

with

plays as (

    select * from {{ ref('fct_plays') }}

),

users as (

    select * from {{ ref('dim_user') }}

),

tracks as (

    select * from {{ ref('dim_track') }}

),

localized as (

    select
        plays.play_id,
        plays.user_id,
        plays.track_id,
        tracks.album_id,
        users.time_zone,
        plays.played_at,
        plays.played_at at time zone users.time_zone as played_at_local,
        plays.ms_played,
        tracks.duration_ms,
        plays.ms_since_previous_play,
        coalesce(tracks.has_metadata, false) as has_track_metadata,
        -- null on rows built before the column existed (until a full refresh): the kept row's source
        coalesce(plays.from_export, plays.play_source = 'export') as from_export,
        plays.built_at

    from plays
    inner join users
        on plays.user_id = users.user_id
    left join tracks
        on plays.track_id = tracks.track_id

),

final as (

    select
        play_id,
        user_id,
        track_id,
        album_id,
        time_zone,
        played_at,
        played_at_local,
        played_at_local::date as played_on_local,
        extract(hour from played_at_local)::int as played_hour_local,
        extract(isodow from played_at_local)::int as played_weekday_local,
        date_trunc('week', played_at_local)::date as week_start,
        from_export,
        built_at,
        has_track_metadata,
        ms_played is null as is_minutes_estimated,

        -- least() ignores a null: the first play held has no previous play to be capped by
        least(
            coalesce(ms_played, duration_ms, {{ var('estimated_play_ms') }}),
            ms_since_previous_play
        )::bigint as ms_listened

    from localized

)

select * from final
