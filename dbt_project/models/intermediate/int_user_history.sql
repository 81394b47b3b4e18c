{#
    When the history we hold for each user starts: the earliest play or skip event held,
    from any source (an export import or the first poll). Nothing before it is known, so
    discoveries, week-over-week comparisons and coverage are all measured from it.
#}

with

plays as (

    select * from {{ ref('stg_spotify__plays') }}

),

users as (

    select * from {{ ref('dim_user') }}

),

first_plays as (

    select
        user_id,
        min(played_at) as history_known_since

    from plays
    group by user_id

),

history_weeks as (

    select
        first_plays.user_id,
        users.time_zone,
        first_plays.history_known_since,
        date_trunc('week', first_plays.history_known_since at time zone users.time_zone)::date as history_week_start

    from first_plays
    inner join users
        on first_plays.user_id = users.user_id

),

final as (

    select
        user_id,
        time_zone,
        history_known_since,
        -- the first local week we hold whole: the history's own week when it starts at that
        -- Monday's 00:00, else the next one
        case
            when history_known_since = history_week_start::timestamp at time zone time_zone
                then history_week_start
            else history_week_start + 7
        end as first_full_week_start

    from history_weeks

)

select * from final
