with

source as (

    select * from {{ source('app', 'track_resolutions') }}

),

renamed as (

    select

        ----------  ids
        name_key as track_name_key,
        track_id,
        user_id,

        ---------- text
        artist_name,
        track_name,
        status as resolution_status,

        ---------- numerics
        attempts,

        ---------- booleans
        status = 'resolved' and track_id is not null as is_resolved,

        ---------- timestamps
        queued_at,
        resolved_at

    from source

)

select * from renamed
