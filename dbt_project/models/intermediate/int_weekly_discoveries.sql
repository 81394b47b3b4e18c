{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{{ delete_weeks_to_rebuild(this) }}"
    )
}}
-- depends_on: {{ ref('int_weekly_rebuild_scope') }}, {{ ref('fct_plays') }}

{#
    What each user heard for the first time in each week: known tracks and artists whose
    first play held (over the whole history, export backfills included) falls in that week,
    and the five new artists played most that week.

    "First play held" is "first ever" only when enough history lies before the week: at
    least var('discovery_min_history_weeks') whole local weeks from history_known_since
    (int_user_history). Before that the numbers are null (top_new_artists []) and
    weeks_until_discoveries says how many more weeks it takes (an export import can shorten it).
    One row per user and week with plays (int_weekly_totals).
#}

with

weeks as (

    select weeks.*
    from {{ ref('int_weekly_totals') }} as weeks
    {{- weeks_to_rebuild('weeks') }}

),

history as (

    select * from {{ ref('int_user_history') }}

),

plays as (

    select plays.*
    from {{ ref('int_plays_localized') }} as plays
    {{- plays_to_rebuild('plays') }}

),

track_artists as (

    select * from {{ ref('bridge_track_artist') }}

),

artists as (

    select * from {{ ref('dim_artist') }}

),

track_first_weeks as (

    select
        user_id,
        track_id,
        min(week_start) as first_week_start

    from plays
    where has_track_metadata
    group by user_id, track_id
    {%- if is_incremental() %}
    -- a track played before the weeks this build recomputes is not new in them
    having not exists (
        select 1
        from {{ ref('fct_plays') }} as earlier_plays
        where earlier_plays.user_id = plays.user_id
            and earlier_plays.track_id = plays.track_id
            and earlier_plays.played_at < {{ rebuild_from_of('plays.user_id') }}
    )
    {%- endif %}

),

new_tracks as (

    select
        user_id,
        first_week_start as week_start,
        count(*) as new_tracks

    from track_first_weeks
    group by user_id, first_week_start

),

artist_plays as (

    select
        plays.user_id,
        plays.week_start,
        artists.artist_id,
        artists.artist_name

    from plays
    inner join track_artists
        on plays.track_id = track_artists.track_id
    inner join artists
        on track_artists.artist_id = artists.artist_id
    where artists.has_metadata

),

artist_first_weeks as (

    select
        user_id,
        artist_id,
        min(week_start) as first_week_start

    from artist_plays
    group by user_id, artist_id
    {%- if is_incremental() %}
    -- an artist played before the weeks this build recomputes is not new in them
    having not exists (
        select 1
        from {{ ref('bridge_track_artist') }} as artist_tracks
        inner join {{ ref('fct_plays') }} as earlier_plays
            on artist_tracks.track_id = earlier_plays.track_id
        where artist_tracks.artist_id = artist_plays.artist_id
            and earlier_plays.user_id = artist_plays.user_id
            and earlier_plays.played_at < {{ rebuild_from_of('artist_plays.user_id') }}
    )
    {%- endif %}

),

new_artist_plays as (

    select
        artist_first_weeks.user_id,
        artist_first_weeks.first_week_start as week_start,
        artist_first_weeks.artist_id,
        artist_plays.artist_name,
        count(*) as plays

    from artist_first_weeks
    inner join artist_plays
        on artist_first_weeks.user_id = artist_plays.user_id
        and artist_first_weeks.artist_id = artist_plays.artist_id
        and artist_first_weeks.first_week_start = artist_plays.week_start
    group by 1, 2, 3, 4

),

new_artists_ranked as (

    select
        *,
        row_number() over (
            partition by user_id, week_start
            order by plays desc, artist_name, artist_id
        ) as artist_rank

    from new_artist_plays

),

new_artists as (

    select
        user_id,
        week_start,
        count(*) as new_artists,
        jsonb_agg(
            jsonb_build_object(
                'rank', artist_rank,
                'id', artist_id,
                'name', artist_name,
                'plays', plays
            )
            order by artist_rank
        ) filter (where artist_rank <= 5) as top_new_artists

    from new_artists_ranked
    group by user_id, week_start

),

availability as (

    select
        weeks.user_id,
        weeks.week_start,
        history.first_full_week_start + 7 * {{ var('discovery_min_history_weeks') }} as discoveries_from

    from weeks
    inner join history
        on weeks.user_id = history.user_id

),

final as (

    select
        availability.user_id,
        availability.week_start,
        availability.week_start >= availability.discoveries_from as discoveries_available,
        greatest((availability.discoveries_from - availability.week_start) / 7, 0)::int as weeks_until_discoveries,
        case
            when availability.week_start >= availability.discoveries_from
                then coalesce(new_tracks.new_tracks, 0)
        end::int as new_tracks,
        case
            when availability.week_start >= availability.discoveries_from
                then coalesce(new_artists.new_artists, 0)
        end::int as new_artists,
        case
            when availability.week_start >= availability.discoveries_from
                then coalesce(new_artists.top_new_artists, '[]'::jsonb)
            else '[]'::jsonb
        end as top_new_artists

    from availability
    left join new_tracks
        on availability.user_id = new_tracks.user_id
        and availability.week_start = new_tracks.week_start
    left join new_artists
        on availability.user_id = new_artists.user_id
        and availability.week_start = new_artists.week_start

)

select * from final
