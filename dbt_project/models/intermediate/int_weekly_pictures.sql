{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{{ delete_weeks_to_rebuild(this) }}"
    )
}}
-- depends_on: {{ ref('int_weekly_rebuild_scope') }}

{#
    What the recap's pictures draw, one row per user and week with plays: minutes per local
    day (7 entries, Monday first, 0 on a day without plays or one the calendar skipped) and
    the listening clock (7 weekdays, Monday first, of 24 local-hour minute values; a local
    hour that occurs twice when clocks go back holds both). Minutes are rounded to 0.1.
#}

with

weeks as (

    select weeks.*
    from {{ ref('int_weekly_totals') }} as weeks
    {{- weeks_to_rebuild('weeks') }}

),

plays as (

    select plays.*
    from {{ ref('int_plays_localized') }} as plays
    {{- plays_to_rebuild('plays') }}

),

week_days as (

    select
        weeks.user_id,
        weeks.week_start,
        weeks.week_start + day_offset as played_on_local,
        day_offset + 1 as weekday

    from weeks
    cross join generate_series(0, 6) as day_offsets (day_offset)

),

week_hours as (

    select
        week_days.*,
        hour_of_day

    from week_days
    cross join generate_series(0, 23) as hours (hour_of_day)

),

hour_totals as (

    select
        user_id,
        week_start,
        played_on_local,
        played_hour_local,
        sum(ms_listened) as ms_listened

    from plays
    group by 1, 2, 3, 4

),

hour_minutes as (

    select
        week_hours.user_id,
        week_hours.week_start,
        week_hours.played_on_local,
        week_hours.weekday,
        week_hours.hour_of_day,
        coalesce(hour_totals.ms_listened, 0) as ms_listened

    from week_hours
    left join hour_totals
        on week_hours.user_id = hour_totals.user_id
        and week_hours.played_on_local = hour_totals.played_on_local
        and week_hours.hour_of_day = hour_totals.played_hour_local

),

day_minutes as (

    select
        user_id,
        week_start,
        played_on_local,
        weekday,
        sum(ms_listened) as ms_listened,
        jsonb_agg(round(ms_listened / 60000.0, 1) order by hour_of_day) as minutes_by_hour

    from hour_minutes
    group by 1, 2, 3, 4

),

final as (

    select
        user_id,
        week_start,
        jsonb_agg(
            jsonb_build_object(
                'date', played_on_local,
                'minutes', round(ms_listened / 60000.0, 1)
            )
            order by weekday
        ) as minutes_by_day,
        jsonb_agg(minutes_by_hour order by weekday) as listening_clock

    from day_minutes
    group by user_id, week_start

)

select * from final
