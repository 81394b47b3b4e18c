with

source as (

    select * from {{ source('spotify', 'tracks') }}

),

renamed as (

    select

        ----------  ids
        track_id,
        album_id,
        artist_ids,

        ---------- text
        name as track_name,

        ---------- numerics
        duration_ms,
        popularity,
        track_number,

        ---------- booleans
        explicit as is_explicit,

        ---------- timestamps
        fetched_at,
        loaded_at

    from source

)

select * from renamed
