with

source as (

    select * from {{ source('app', 'ingest_gaps') }}

),

renamed as (

    select

        ----------  ids
        md5(user_id || '|' || gap_from::text || '|' || gap_to::text) as ingest_gap_id,
        user_id,

        ---------- timestamps
        gap_from,
        gap_to,
        detected_at

    from source

)

select * from renamed
