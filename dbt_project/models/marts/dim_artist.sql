{#
    Artists credited on a track but not (yet) fetched are kept as inferred members
    (has_metadata = false) so every bridge row has its artist.
    Genres are Spotify's when it gives any (it gives new apps none), else MusicBrainz's tags
    (stg_app__artist_genres, when the installation looks them up), else an empty array.
#}

with

artists as (

    select * from {{ ref('stg_spotify__artists') }}

),

musicbrainz_genres as (

    select * from {{ ref('stg_app__artist_genres') }}
    where has_genres

),

credited_artists as (

    select distinct artist_id from {{ ref('bridge_track_artist') }}

),

all_artist_ids as (

    select artist_id from artists
    union
    select artist_id from credited_artists

),

joined as (

    select
        all_artist_ids.artist_id,
        artists.artist_name,
        artists.popularity,
        artists.follower_count,
        artists.image_url,
        artists.artist_id is not null as has_metadata,
        case
            when cardinality(artists.genres) > 0 then artists.genres
            when musicbrainz_genres.artist_id is not null then musicbrainz_genres.genres
            else array[]::text[]
        end as genres,
        case
            when cardinality(artists.genres) > 0 then 'spotify'
            when musicbrainz_genres.artist_id is not null then musicbrainz_genres.genre_source
        end as genre_source

    from all_artist_ids
    left join artists
        on all_artist_ids.artist_id = artists.artist_id
    left join musicbrainz_genres
        on all_artist_ids.artist_id = musicbrainz_genres.artist_id

),

final as (

    select
        artist_id,
        coalesce(artist_name, 'Unknown artist') as artist_name,
        genres,
        genres[1] as primary_genre,
        genre_source,
        popularity,
        follower_count,
        image_url,
        has_metadata

    from joined

)

select * from final
