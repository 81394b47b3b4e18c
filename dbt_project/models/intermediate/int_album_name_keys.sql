{#
    Name-only albums (`name:album:…`, named by an extended-history export with its album
    artist) that Spotify metadata has since shown under a real id: one row per name key whose
    name (NFC-normalised, trimmed, lower case) is that of exactly one real album crediting the
    same artist (a name-only artist counts as its real artist, int_artist_name_keys). While
    the metadata backfill works through an export, some tracks of an album already point at the
    real album and others still at its name key: dim_track gives them all the real one, so the
    album counts once. Ambiguous names (a single and an album both called "Heroes") stay apart.
#}

with

albums as (

    select
        album_id,
        artist_ids,
        lower(trim(normalize(album_name, NFC))) as album_name_normalized

    from {{ ref('stg_spotify__albums') }}

),

artist_name_keys as (

    select * from {{ ref('int_artist_name_keys') }}

),

name_only as (

    select
        albums.album_id,
        albums.album_name_normalized,
        coalesce(artist_name_keys.artist_id, albums.artist_ids[1]) as artist_id

    from albums
    left join artist_name_keys
        on albums.artist_ids[1] = artist_name_keys.artist_name_key
    where albums.album_id like 'name:album:%'

),

real_album_artists as (

    select distinct
        albums.album_id,
        albums.album_name_normalized,
        credited.artist_id

    from albums
    cross join lateral unnest(albums.artist_ids) as credited (artist_id)
    where albums.album_id not like 'name:%'

),

final as (

    select
        name_only.album_id as album_name_key,
        min(real_album_artists.album_id) as album_id

    from name_only
    inner join real_album_artists
        on name_only.album_name_normalized = real_album_artists.album_name_normalized
        and name_only.artist_id = real_album_artists.artist_id
    group by name_only.album_id
    having count(distinct real_album_artists.album_id) = 1

)

select * from final
