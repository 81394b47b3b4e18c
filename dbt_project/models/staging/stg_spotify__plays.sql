with

source as (

    select * from {{ source('spotify', 'plays') }}

),

renamed as (

    select

        ----------  ids
        user_id,
        track_id,
        context_uri,

        ---------- text
        source as play_source,

        ---------- numerics
        ms_played,

        ---------- timestamps
        played_at,
        ingested_at,
        loaded_at

    from source

)

select * from renamed
