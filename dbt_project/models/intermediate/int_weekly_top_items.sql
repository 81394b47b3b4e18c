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
#}

with

plays as (

    select plays.*
    from {{ ref('int_plays_localized') }} as plays
    {{- plays_to_rebuild('plays') }}

),

tracks as (

    select * from {{ ref('dim_track') }}

),

albums as (

    select * from {{ ref('dim_album') }}

),

artists as (

    select * from {{ ref('dim_artist') }}

),

track_artists as (

    select * from {{ ref('bridge_track_artist') }}

),

track_totals as (

    select
        plays.user_id,
        plays.week_start,
        'track' as item_type,
        plays.track_id as item_id,
        tracks.track_name as item_name,
        tracks.artist_names,
        track_albums.image_url,
        count(*) as plays,
        sum(plays.ms_listened) as ms_listened

    from plays
    inner join tracks
        on plays.track_id = tracks.track_id
    left join albums as track_albums
        on tracks.album_id = track_albums.album_id
    where tracks.has_metadata
    group by 1, 2, 3, 4, 5, 6, 7

),

artist_totals as (

    select
        plays.user_id,
        plays.week_start,
        'artist' as item_type,
        artists.artist_id as item_id,
        artists.artist_name as item_name,
        null::text as artist_names,
        artists.image_url,
        count(*) as plays,
        sum(plays.ms_listened) as ms_listened

    from plays
    inner join track_artists
        on plays.track_id = track_artists.track_id
    inner join artists
        on track_artists.artist_id = artists.artist_id
    where artists.has_metadata
    group by 1, 2, 3, 4, 5, 6, 7

),

album_totals as (

    select
        plays.user_id,
        plays.week_start,
        'album' as item_type,
        albums.album_id as item_id,
        albums.album_name as item_name,
        albums.artist_names,
        albums.image_url,
        count(*) as plays,
        sum(plays.ms_listened) as ms_listened

    from plays
    inner join albums
        on plays.album_id = albums.album_id
    where albums.has_metadata
    group by 1, 2, 3, 4, 5, 6, 7

),

play_genres as (

    select distinct
        plays.play_id,
        plays.user_id,
        plays.week_start,
        plays.ms_listened,
        genre

    from plays
    inner join track_artists
        on plays.track_id = track_artists.track_id
    inner join artists
        on track_artists.artist_id = artists.artist_id
    cross join lateral unnest(artists.genres) as artist_genres (genre)

),

genre_totals as (

    select
        user_id,
        week_start,
        'genre' as item_type,
        genre as item_id,
        genre as item_name,
        null::text as artist_names,
        null::text as image_url,
        count(*) as plays,
        sum(ms_listened) as ms_listened

    from play_genres
    group by 1, 2, 3, 4, 5, 6

),

all_totals as (

    select * from track_totals
    union all
    select * from artist_totals
    union all
    select * from album_totals
    union all
    select * from genre_totals

),

ranked as (

    select
        *,
        row_number() over (
            partition by user_id, week_start, item_type
            order by plays desc, ms_listened desc, item_name, item_id
        ) as item_rank

    from all_totals

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
