with

source as (

    select * from {{ source('spotify', 'albums') }}

),

renamed as (

    select

        ----------  ids
        album_id,
        artist_ids,

        ---------- text
        name as album_name,
        album_type,
        release_date,
        release_date_precision,
        image_url,

        ---------- numerics
        case
            when release_date ~ '^[0-9]{4}' then left(release_date, 4)::int
        end as release_year,

        ---------- timestamps
        fetched_at,
        loaded_at

    from source

)

select * from renamed
