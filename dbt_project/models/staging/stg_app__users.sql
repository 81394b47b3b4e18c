with

source as (

    select * from {{ source('app', 'users') }}

),

time_zones as (

    select name as time_zone from pg_timezone_names

),

renamed as (

    select

        ----------  ids
        source.user_id,

        ---------- text
        source.display_name,
        source.email,
        -- an unknown IANA name would make every `at time zone` fail: fall back to UTC
        coalesce(time_zones.time_zone, 'UTC') as time_zone,
        source.status,
        source.status_reason,
        -- refresh_token_encrypted is deliberately not selected

        ---------- booleans
        source.status = 'active' as is_active,

        ---------- timestamps
        source.consent_at,
        source.created_at,
        source.updated_at

    from source
    left join time_zones
        on source.time_zone = time_zones.time_zone

)

select * from renamed
