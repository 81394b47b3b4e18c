{#
    Artists credited on a track but not (yet) fetched are kept as inferred members
    (has_metadata = false) so every bridge row has its artist.
#}

with

artists as (

    select * from {{ ref('stg_spotify__artists') }}

),

credited_artists as (

    select distinct artist_id from {{ ref('bridge_track_artist') }}

),

all_artist_ids as (

    select artist_id from artists
    union
    select artist_id from credited_artists

),

final as (

    select
        all_artist_ids.artist_id,
        coalesce(artists.artist_name, 'Unknown artist') as artist_name,
        coalesce(artists.genres, array[]::text[]) as genres,
        artists.genres[1] as primary_genre,
        artists.popularity,
        artists.follower_count,
        artists.image_url,
        artists.artist_id is not null as has_metadata

    from all_artist_ids
    left join artists
        on all_artist_ids.artist_id = artists.artist_id

)

select * from final
