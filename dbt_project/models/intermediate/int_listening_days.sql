{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{{ delete_weeks_to_rebuild(this) }}",
        post_hook="{{ ensure_index(this, ['user_id', 'played_on_local']) }}"
    )
}}
-- depends_on: {{ ref('int_weekly_rebuild_scope') }}

{#
    Each user's local days with at least one play, with their week: what the streaks count.
    Kept apart from the plays because a streak can run back long before the weeks a build
    recomputes (int_weekly_streaks reads a user's days whole).
#}

with

plays as (

    select plays.*
    from {{ ref('int_plays_localized') }} as plays
    {{- plays_to_rebuild('plays') }}

),

final as (

    select distinct
        plays.user_id,
        plays.week_start,
        plays.played_on_local

    from plays

)

select * from final
