{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_weeks_to_rebuild(this) }}",
        indexes=[{'columns': ['user_id', 'week_start'], 'unique': true}]
    )
}}
-- depends_on: {{ ref('int_weekly_rebuild_scope') }}

{#
    One row per user and week with at least one play. A week starts Monday 00:00 in the
    user's own time zone (dim_user.time_zone). Read by the weekly recap e-mail: column
    names are a contract (see wrapped_weekly.yml).

    Only joins: every number is computed in an intermediate model of the same grain (one row
    per user and week), with int_weekly_totals as the spine; the coalesces give weeks that
    have no row in an optional part (nothing ranked, no skips) its empty value. The parts
    that exist for every week (discoveries, changes, coverage, pictures) give their own nulls,
    which mean "not known" (see docs/recap.md).
    Indexed on (user_id, week_start): the recap job and the listener's page read one user's weeks.
    Incremental like the weekly models it joins (macros/weeks_to_rebuild.sql): a build replaces
    the weeks int_weekly_rebuild_scope names; built_at says which build wrote a week.
#}

with

weeks as (

    select weeks.*
    from {{ ref('int_weekly_totals') }} as weeks
    {{- weeks_to_rebuild('weeks') }}

),

streaks as (

    select * from {{ ref('int_weekly_streaks') }}

),

busiest_times as (

    select * from {{ ref('int_weekly_busiest_times') }}

),

top_lists as (

    select * from {{ ref('int_weekly_top_lists') }}

),

discoveries as (

    select * from {{ ref('int_weekly_discoveries') }}

),

changes as (

    select * from {{ ref('int_weekly_changes') }}

),

ingest_gaps as (

    select * from {{ ref('int_weekly_ingest_gaps') }}

),

coverage as (

    select * from {{ ref('int_weekly_coverage') }}

),

pictures as (

    select * from {{ ref('int_weekly_pictures') }}

),

skips as (

    select * from {{ ref('int_weekly_skips') }}

),

final as (

    select

        ----------  ids
        weeks.user_id || '|' || weeks.week_start::text as user_week_id,
        weeks.user_id,

        ---------- the week, in the user's time zone
        weeks.week_start,
        weeks.week_end,
        weeks.time_zone,
        weeks.week_start_at,
        weeks.week_end_at,
        coverage.history_known_since,

        ---------- totals
        weeks.plays,
        weeks.ms_listened,
        weeks.minutes_listened,
        weeks.distinct_tracks,
        weeks.distinct_artists,
        weeks.plays_estimated_minutes,
        weeks.plays_pending_metadata,

        ---------- habits
        streaks.days_with_plays,
        streaks.longest_streak_days,
        streaks.longest_streak_running_days,
        busiest_times.busiest_hour,
        busiest_times.busiest_weekday,
        busiest_times.busiest_weekday_name,

        ---------- pictures
        pictures.minutes_by_day,
        pictures.listening_clock,

        ---------- top 5s
        coalesce(top_lists.top_tracks, '[]'::jsonb) as top_tracks,
        coalesce(top_lists.top_artists, '[]'::jsonb) as top_artists,
        coalesce(top_lists.top_albums, '[]'::jsonb) as top_albums,
        coalesce(top_lists.top_genres, '[]'::jsonb) as top_genres,

        ---------- discoveries (only with enough history before the week)
        discoveries.discoveries_available,
        discoveries.weeks_until_discoveries,
        discoveries.new_tracks,
        discoveries.new_artists,
        discoveries.top_new_artists,

        ---------- change vs the week before
        changes.previous_week_status,
        changes.previous_week_plays,
        changes.previous_week_minutes_listened,
        changes.plays_change,
        changes.minutes_listened_change,

        ---------- skips (known only from privacy exports)
        coalesce(skips.skip_events, 0) as skip_events,
        skips.skip_rate,
        coalesce(skips.top_skipped_tracks, '[]'::jsonb) as top_skipped_tracks,

        ---------- coverage: what we may have missed
        coalesce(ingest_gaps.has_gap, false) as has_gap,
        coverage.week_hours,
        coverage.missed_hours,
        coverage.estimated_missed_plays,

        ---------- the build
        {{ this_run() }} as built_at

    from weeks
    left join streaks
        on weeks.user_id = streaks.user_id
        and weeks.week_start = streaks.week_start
    left join busiest_times
        on weeks.user_id = busiest_times.user_id
        and weeks.week_start = busiest_times.week_start
    left join top_lists
        on weeks.user_id = top_lists.user_id
        and weeks.week_start = top_lists.week_start
    left join discoveries
        on weeks.user_id = discoveries.user_id
        and weeks.week_start = discoveries.week_start
    left join changes
        on weeks.user_id = changes.user_id
        and weeks.week_start = changes.week_start
    left join ingest_gaps
        on weeks.user_id = ingest_gaps.user_id
        and weeks.week_start = ingest_gaps.week_start
    left join skips
        on weeks.user_id = skips.user_id
        and weeks.week_start = skips.week_start
    left join coverage
        on weeks.user_id = coverage.user_id
        and weeks.week_start = coverage.week_start
    left join pictures
        on weeks.user_id = pictures.user_id
        and weeks.week_start = pictures.week_start

)

select * from final
