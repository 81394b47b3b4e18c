with

users as (

    select * from {{ ref('stg_app__users') }}

),

final as (

    select
        user_id,
        display_name,
        email,
        time_zone,
        status,
        is_active,
        consent_at,
        created_at,
        updated_at

    from users

)

select * from final
