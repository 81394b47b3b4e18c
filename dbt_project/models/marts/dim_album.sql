{#
    Albums a track points at but not (yet) fetched are kept as inferred members
    (has_metadata = false) so every track's album_id resolves.
#}

with

albums as (

    select * from {{ ref('stg_spotify__albums') }}

),

artists as (

    select * from {{ ref('stg_spotify__artists') }}

),

track_albums as (

    select distinct album_id
    from {{ ref('stg_spotify__tracks') }}
    where album_id is not null

),

all_album_ids as (

    select album_id from albums
    union
    select album_id from track_albums

),

album_artist_names as (

    select
        albums.album_id,
        string_agg(artists.artist_name, ', ' order by credited.artist_position) as artist_names

    from albums
    cross join lateral unnest(albums.artist_ids) with ordinality as credited (artist_id, artist_position)
    inner join artists
        on credited.artist_id = artists.artist_id
    group by albums.album_id

),

final as (

    select
        all_album_ids.album_id,
        coalesce(albums.album_name, 'Unknown album') as album_name,
        albums.album_type,
        album_artist_names.artist_names,
        albums.release_date,
        albums.release_date_precision,
        albums.release_year,
        albums.image_url,
        albums.album_id is not null as has_metadata

    from all_album_ids
    left join albums
        on all_album_ids.album_id = albums.album_id
    left join album_artist_names
        on all_album_ids.album_id = album_artist_names.album_id

)

select * from final
