{#
    Each user's week against the calendar week before it (the Monday 7 days earlier, local
    time): that week's plays and minutes, 0 when the user did not listen then.
#}

with

weeks as (

    select * from {{ ref('int_weekly_totals') }}

),

final as (

    select
        weeks.user_id,
        weeks.week_start,
        coalesce(previous_weeks.plays, 0)::int as previous_week_plays,
        round(coalesce(previous_weeks.ms_listened, 0) / 60000.0, 1)::numeric(12, 1) as previous_week_minutes_listened,
        (weeks.plays - coalesce(previous_weeks.plays, 0))::int as plays_change,
        round((weeks.ms_listened - coalesce(previous_weeks.ms_listened, 0)) / 60000.0, 1)::numeric(12, 1) as minutes_listened_change

    from weeks
    left join weeks as previous_weeks
        on weeks.user_id = previous_weeks.user_id
        and weeks.week_start - 7 = previous_weeks.week_start

)

select * from final
