{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{{ delete_weeks_to_rebuild(this) }}",
        post_hook="{{ ensure_index(this, ['user_id', 'week_start']) }}"
    )
}}
-- depends_on: {{ ref('int_weekly_rebuild_scope') }}

{#
    The top 5 tracks, artists, albums and genres of each user and week. Only what is known is
    ranked: a track, artist or album whose metadata has not arrived ('Unknown …') never is.
    image_url: the album's picture for tracks and albums, the artist's for artists.
    A play counts for every artist credited on its track, and once for each genre of those
    artists. Ties: more plays first, then more listened time, then name, then id.

    At ten million plays (a full build), the plays are summed once per user, week and track,
    and every kind's totals are sums of those; only the few items that can make a top five
    are named and sorted by name (sorting every total with its name took 3 minutes of 4).
#}

with

plays as (

    select plays.*
    from {{ ref('int_plays_localized') }} as plays
    {{- plays_to_rebuild('plays') }}

),

-- not materialized: each is read more than once, and read in place Postgres knows its
-- size (a materialized CTE's estimate led to sorting millions of totals for merge joins)
tracks as not materialized (

    select * from {{ ref('dim_track') }}

),

albums as not materialized (

    select * from {{ ref('dim_album') }}

),

artists as not materialized (

    select * from {{ ref('dim_artist') }}

),

track_artists as not materialized (

    select * from {{ ref('bridge_track_artist') }}

),

track_weeks as (

    select
        user_id,
        week_start,
        track_id,
        count(*) as plays,
        sum(ms_listened) as ms_listened

    from plays
    group by user_id, week_start, track_id

),

-- a play counts once per genre of its track: the distinct genres of the track's artists
-- (of the tracks played: an hourly build's few, not every track known)
track_genres as (

    select distinct
        track_artists.track_id,
        artist_genres.genre

    from track_artists
    inner join artists
        on track_artists.artist_id = artists.artist_id
    cross join lateral unnest(artists.genres) as artist_genres (genre)
    where track_artists.track_id in (select track_weeks.track_id from track_weeks)

),

item_totals as (

    select
        track_weeks.user_id,
        track_weeks.week_start,
        'track' as item_type,
        track_weeks.track_id as item_id,
        track_weeks.plays,
        track_weeks.ms_listened

    from track_weeks
    inner join tracks
        on track_weeks.track_id = tracks.track_id
    where tracks.has_metadata

    union all

    select
        track_weeks.user_id,
        track_weeks.week_start,
        'artist' as item_type,
        artists.artist_id as item_id,
        sum(track_weeks.plays) as plays,
        sum(track_weeks.ms_listened) as ms_listened

    from track_weeks
    inner join track_artists
        on track_weeks.track_id = track_artists.track_id
    inner join artists
        on track_artists.artist_id = artists.artist_id
    where artists.has_metadata
    group by 1, 2, 3, 4

    union all

    select
        track_weeks.user_id,
        track_weeks.week_start,
        'album' as item_type,
        albums.album_id as item_id,
        sum(track_weeks.plays) as plays,
        sum(track_weeks.ms_listened) as ms_listened

    from track_weeks
    inner join tracks
        on track_weeks.track_id = tracks.track_id
    inner join albums
        on tracks.album_id = albums.album_id
    where albums.has_metadata
    group by 1, 2, 3, 4

    union all

    select
        track_weeks.user_id,
        track_weeks.week_start,
        'genre' as item_type,
        track_genres.genre as item_id,
        sum(track_weeks.plays) as plays,
        sum(track_weeks.ms_listened) as ms_listened

    from track_weeks
    inner join track_genres
        on track_weeks.track_id = track_genres.track_id
    group by 1, 2, 3, 4

),

-- The items that can make a top five: no more than four items beat them on plays, then
-- listened time. Items tied on both are all kept, for the name to order them below; only
-- these few are named and ranked (sorting every total by name would cost far more).
contenders as (

    select *
    from (
        select
            *,
            rank() over (
                partition by user_id, week_start, item_type
                order by plays desc, ms_listened desc
            ) as contender_rank

        from item_totals
    ) as ranked_totals
    where contender_rank <= 5

),

named as (

    select
        contenders.user_id,
        contenders.week_start,
        contenders.item_type,
        contenders.item_id,
        case contenders.item_type
            when 'track' then tracks.track_name
            when 'artist' then artists.artist_name
            when 'album' then albums.album_name
            else contenders.item_id
        end as item_name,
        case contenders.item_type
            when 'track' then tracks.artist_names
            when 'album' then albums.artist_names
        end as artist_names,
        case contenders.item_type
            when 'track' then track_albums.image_url
            when 'artist' then artists.image_url
            when 'album' then albums.image_url
        end as image_url,
        contenders.plays,
        contenders.ms_listened

    from contenders
    left join tracks
        on contenders.item_type = 'track'
        and contenders.item_id = tracks.track_id
    left join albums as track_albums
        on tracks.album_id = track_albums.album_id
    left join artists
        on contenders.item_type = 'artist'
        and contenders.item_id = artists.artist_id
    left join albums
        on contenders.item_type = 'album'
        and contenders.item_id = albums.album_id

),

ranked as (

    select
        *,
        row_number() over (
            partition by user_id, week_start, item_type
            order by plays desc, ms_listened desc, item_name, item_id
        ) as item_rank

    from named

),

final as (

    select
        user_id,
        week_start,
        item_type,
        item_rank::int as item_rank,
        item_id,
        item_name,
        artist_names,
        image_url,
        plays::int as plays,
        ms_listened::bigint as ms_listened

    from ranked
    where item_rank <= 5

)

select * from final
