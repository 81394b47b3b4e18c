with

source as (

    select * from {{ source('app', 'artist_genres') }}

),

renamed as (

    select

        ----------  ids
        artist_id,
        musicbrainz_id,

        ---------- text
        artist_name as searched_artist_name,
        genres,
        source as genre_source,
        status as lookup_status,

        ---------- booleans
        status = 'found' and cardinality(genres) > 0 as has_genres,

        ---------- timestamps
        fetched_at

    from source

)

select * from renamed
