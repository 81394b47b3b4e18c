{#
    Days with plays in each user's week, the longest run of consecutive local days with plays
    inside the week, and how long the whole run that streak belongs to is, counting the days
    before the week ("7 days this week, 15 days running"). Gaps and islands: consecutive days
    minus their row number share one anchor; a run crossing a Monday has one anchor in both weeks.
#}

with

plays as (

    select * from {{ ref('int_plays_localized') }}

),

listening_days as (

    select distinct
        user_id,
        week_start,
        played_on_local

    from plays

),

runs as (

    select
        *,
        played_on_local - (
            row_number() over (partition by user_id order by played_on_local)
        )::int as run_anchor

    from listening_days

),

runs_counted as (

    select
        *,
        -- days of the run up to and including this one
        row_number() over (partition by user_id, run_anchor order by played_on_local) as run_days_so_far

    from runs

),

streaks as (

    select
        user_id,
        week_start,
        run_anchor,
        count(*) as streak_days,
        max(run_days_so_far) as running_days

    from runs_counted
    group by user_id, week_start, run_anchor

),

streaks_ranked as (

    select
        *,
        row_number() over (
            partition by user_id, week_start
            order by streak_days desc, running_days desc
        ) as streak_rank

    from streaks

),

final as (

    select
        user_id,
        week_start,
        sum(streak_days)::int as days_with_plays,
        max(streak_days)::int as longest_streak_days,
        max(running_days) filter (where streak_rank = 1)::int as longest_streak_running_days

    from streaks_ranked
    group by user_id, week_start

)

select * from final
