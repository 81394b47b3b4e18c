{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{{ delete_weeks_to_rebuild(this) }}"
    )
}}
-- depends_on: {{ ref('int_weekly_rebuild_scope') }}

{#
    The week's skips (fct_skips, in the user's time zone): one row per user and week with
    plays (int_weekly_totals). Skips are known only where a privacy export covered the week
    (the API cannot see them), so the skip rate is null for a week without any exported row:
    no number rather than a false 0 %. The most skipped tracks have top_tracks' shape, with
    "plays" = times skipped and "minutes" = time listened before skipping.
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

skips as (

    select skips.*
    from {{ ref('fct_skips') }} as skips
    {{- plays_to_rebuild('skips', 'skipped_at') }}

),

users as (

    select * from {{ ref('dim_user') }}

),

tracks as (

    select * from {{ ref('dim_track') }}

),

skips_localized as (

    select
        skips.user_id,
        skips.track_id,
        skips.ms_played,
        date_trunc('week', skips.skipped_at at time zone users.time_zone)::date as week_start

    from skips
    inner join users
        on skips.user_id = users.user_id

),

skip_totals as (

    select
        user_id,
        week_start,
        count(*) as skip_events

    from skips_localized
    group by user_id, week_start

),

exported_play_weeks as (

    select distinct
        user_id,
        week_start

    from plays
    where from_export

),

skipped_track_totals as (

    select
        skips_localized.user_id,
        skips_localized.week_start,
        skips_localized.track_id,
        tracks.track_name,
        tracks.artist_names,
        count(*) as skips,
        sum(skips_localized.ms_played) as ms_played

    from skips_localized
    inner join tracks
        on skips_localized.track_id = tracks.track_id
    where tracks.has_metadata
    group by 1, 2, 3, 4, 5

),

skipped_tracks_ranked as (

    select
        *,
        row_number() over (
            partition by user_id, week_start
            order by skips desc, ms_played desc, track_name, track_id
        ) as skip_rank

    from skipped_track_totals

),

top_skipped as (

    select
        user_id,
        week_start,
        jsonb_agg(
            jsonb_build_object(
                'rank', skip_rank,
                'id', track_id,
                'name', track_name,
                'artists', artist_names,
                'plays', skips,
                'minutes', round(ms_played / 60000.0, 1)
            )
            order by skip_rank
        ) as top_skipped_tracks

    from skipped_tracks_ranked
    where skip_rank <= 5
    group by user_id, week_start

),

final as (

    select
        weeks.user_id,
        weeks.week_start,
        coalesce(skip_totals.skip_events, 0)::int as skip_events,
        (skip_totals.user_id is not null or exported_play_weeks.user_id is not null) as has_export_data,
        case
            when skip_totals.user_id is not null or exported_play_weeks.user_id is not null
                then round(
                    coalesce(skip_totals.skip_events, 0)::numeric
                    / (weeks.plays + coalesce(skip_totals.skip_events, 0)),
                    4
                )
        end::numeric(5, 4) as skip_rate,
        coalesce(top_skipped.top_skipped_tracks, '[]'::jsonb) as top_skipped_tracks

    from weeks
    left join skip_totals
        on weeks.user_id = skip_totals.user_id
        and weeks.week_start = skip_totals.week_start
    left join exported_play_weeks
        on weeks.user_id = exported_play_weeks.user_id
        and weeks.week_start = exported_play_weeks.week_start
    left join top_skipped
        on weeks.user_id = top_skipped.user_id
        and weeks.week_start = top_skipped.week_start

)

select * from final
