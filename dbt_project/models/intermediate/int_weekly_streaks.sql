{#
    Days with plays in each user's week and the longest run of consecutive such days
    (gaps and islands: consecutive days minus their row number share one value).
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

islands as (

    select
        *,
        played_on_local - (
            row_number() over (partition by user_id, week_start order by played_on_local)
        )::int as island_anchor

    from listening_days

),

streaks as (

    select
        user_id,
        week_start,
        island_anchor,
        count(*) as streak_days

    from islands
    group by user_id, week_start, island_anchor

),

final as (

    select
        user_id,
        week_start,
        sum(streak_days)::int as days_with_plays,
        max(streak_days)::int as longest_streak_days

    from streaks
    group by user_id, week_start

)

select * from final
