{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{{ delete_weeks_to_rebuild(this) }}"
    )
}}
-- depends_on: {{ ref('int_weekly_rebuild_scope') }}

{#
    The local hour and ISO weekday with the most plays in each user's week; a tie goes to
    the earlier hour or day.
#}

with

plays as (

    select plays.*
    from {{ ref('int_plays_localized') }} as plays
    {{- plays_to_rebuild('plays') }}

),

hours_ranked as (

    select
        user_id,
        week_start,
        played_hour_local,
        row_number() over (
            partition by user_id, week_start
            order by count(*) desc, played_hour_local
        ) as hour_rank

    from plays
    group by user_id, week_start, played_hour_local

),

weekdays_ranked as (

    select
        user_id,
        week_start,
        played_weekday_local,
        row_number() over (
            partition by user_id, week_start
            order by count(*) desc, played_weekday_local
        ) as weekday_rank

    from plays
    group by user_id, week_start, played_weekday_local

),

final as (

    select
        busiest_hours.user_id,
        busiest_hours.week_start,
        busiest_hours.played_hour_local as busiest_hour,
        busiest_weekdays.played_weekday_local as busiest_weekday,
        to_char(date '2024-01-01' + (busiest_weekdays.played_weekday_local - 1), 'FMDay') as busiest_weekday_name

    from hours_ranked as busiest_hours
    inner join weekdays_ranked as busiest_weekdays
        on busiest_hours.user_id = busiest_weekdays.user_id
        and busiest_hours.week_start = busiest_weekdays.week_start
        and busiest_weekdays.weekday_rank = 1
    where busiest_hours.hour_rank = 1

)

select * from final
