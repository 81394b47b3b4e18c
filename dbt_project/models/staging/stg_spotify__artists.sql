with

source as (

    select * from {{ source('spotify', 'artists') }}

),

renamed as (

    select

        ----------  ids
        artist_id,

        ---------- text
        name as artist_name,
        -- often null (new apps never get genres): an empty array is easier to work with
        coalesce(genres, array[]::text[]) as genres,
        image_url,

        ---------- numerics
        popularity,
        followers as follower_count,

        ---------- timestamps
        fetched_at,
        loaded_at

    from source

)

select * from renamed
