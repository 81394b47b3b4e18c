{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{{ delete_weeks_to_rebuild(this) }}"
    )
}}
-- depends_on: {{ ref('int_weekly_rebuild_scope') }}

{#
    Days with plays in each user's week, the longest run of consecutive local days with plays
    inside the week, and how long the whole run that streak belongs to is, counting the days
    before the week ("7 days this week, 15 days running"). Gaps and islands: consecutive days
    minus their row number share one anchor; a run crossing a Monday has one anchor in both weeks.
    A run can start long before the weeks a build recomputes: their users' days are read whole.
#}

with

listening_days as (

    select listening_days.*
    from {{ ref('int_listening_days') }} as listening_days
    {{- users_to_rebuild('listening_days') }}

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
        streaks_ranked.user_id,
        streaks_ranked.week_start,
        sum(streak_days)::int as days_with_plays,
        max(streak_days)::int as longest_streak_days,
        max(running_days) filter (where streak_rank = 1)::int as longest_streak_running_days

    from streaks_ranked
    {{- weeks_to_rebuild('streaks_ranked') }}
    group by streaks_ranked.user_id, streaks_ranked.week_start

)

select * from final
