{#
    What each user heard for the first time ever in each week: tracks and artists whose
    first play (over the whole history, export backfills included) falls in that week,
    and the five new artists played most that week.
#}

with

plays as (

    select * from {{ ref('int_plays_localized') }}

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
    group by user_id, track_id

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
        track_artists.artist_id

    from plays
    inner join track_artists
        on plays.track_id = track_artists.track_id

),

artist_first_weeks as (

    select
        user_id,
        artist_id,
        min(week_start) as first_week_start

    from artist_plays
    group by user_id, artist_id

),

new_artist_plays as (

    select
        artist_first_weeks.user_id,
        artist_first_weeks.first_week_start as week_start,
        artist_first_weeks.artist_id,
        artists.artist_name,
        artists.has_metadata,
        count(*) as plays

    from artist_first_weeks
    inner join artist_plays
        on artist_first_weeks.user_id = artist_plays.user_id
        and artist_first_weeks.artist_id = artist_plays.artist_id
        and artist_first_weeks.first_week_start = artist_plays.week_start
    inner join artists
        on artist_first_weeks.artist_id = artists.artist_id
    group by 1, 2, 3, 4, 5

),

new_artists_ranked as (

    select
        *,
        row_number() over (
            partition by user_id, week_start
            -- artists without metadata yet ('Unknown artist') go last
            order by has_metadata desc, plays desc, artist_name, artist_id
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
        ) filter (where artist_rank <= 5 and has_metadata) as top_new_artists

    from new_artists_ranked
    group by user_id, week_start

),

final as (

    select
        coalesce(new_tracks.user_id, new_artists.user_id) as user_id,
        coalesce(new_tracks.week_start, new_artists.week_start) as week_start,
        coalesce(new_tracks.new_tracks, 0)::int as new_tracks,
        coalesce(new_artists.new_artists, 0)::int as new_artists,
        coalesce(new_artists.top_new_artists, '[]'::jsonb) as top_new_artists

    from new_tracks
    full outer join new_artists
        on new_tracks.user_id = new_artists.user_id
        and new_tracks.week_start = new_artists.week_start

)

select * from final
