{#
    Each user's week against the calendar week before it (the Monday 7 days earlier, local
    time), compared only when we could have seen that whole week (int_weekly_coverage):
    'compared' (it had plays), 'no_plays' (fully covered, silent), 'partial' (history starts
    inside it or an ingest gap overlaps it) or 'not_known' (wholly before the history we hold).
    The previous-week numbers are null unless compared or no_plays, and the minutes change is
    the difference of the two rounded figures the e-mail shows.
#}

with

weeks as (

    select * from {{ ref('int_weekly_totals') }}

),

coverage as (

    select * from {{ ref('int_weekly_coverage') }}

),

with_status as (

    select
        weeks.user_id,
        weeks.week_start,
        weeks.plays,
        weeks.minutes_listened,
        case
            when coverage.previous_week_coverage <> 'covered' then coverage.previous_week_coverage
            when previous_weeks.plays > 0 then 'compared'
            else 'no_plays'
        end as previous_week_status,
        coalesce(previous_weeks.plays, 0) as previous_plays,
        coalesce(previous_weeks.minutes_listened, 0) as previous_minutes_listened

    from weeks
    inner join coverage
        on weeks.user_id = coverage.user_id
        and weeks.week_start = coverage.week_start
    left join weeks as previous_weeks
        on weeks.user_id = previous_weeks.user_id
        and weeks.week_start - 7 = previous_weeks.week_start

),

final as (

    select
        user_id,
        week_start,
        previous_week_status,
        case when previous_week_status in ('compared', 'no_plays') then previous_plays end::int
            as previous_week_plays,
        case when previous_week_status in ('compared', 'no_plays') then previous_minutes_listened end::numeric(12, 1)
            as previous_week_minutes_listened,
        case when previous_week_status in ('compared', 'no_plays') then plays - previous_plays end::int
            as plays_change,
        case when previous_week_status in ('compared', 'no_plays') then minutes_listened - previous_minutes_listened end::numeric(12, 1)
            as minutes_listened_change

    from with_status

)

select * from final
