{#
    How much of each user's week (and of the week before it) we could have seen. Unknown
    time is before history_known_since or inside a detected ingest gap (app.ingest_gaps: a
    poll found 50 new plays, so some may be missing); the two are united as ranges, so an
    hour in both counts once. Weeks are measured as instants: a week is not always 168 hours
    (DST, or Samoa skipping 2011-12-30).
#}

with

weeks as (

    select * from {{ ref('int_weekly_totals') }}

),

history as (

    select * from {{ ref('int_user_history') }}

),

ingest_gaps as (

    select * from {{ ref('stg_app__ingest_gaps') }}

),

unknown_spans as (

    select
        user_id,
        tstzrange('-infinity', history_known_since) as unknown_span

    from history

    union all

    select
        user_id,
        tstzrange(gap_from, gap_to) as unknown_span

    from ingest_gaps
    where gap_to > gap_from

),

unknown_by_user as (

    select
        user_id,
        range_agg(unknown_span) as unknown_spans

    from unknown_spans
    group by user_id

),

weeks_unknown as (

    select
        weeks.user_id,
        weeks.week_start,
        weeks.plays,
        weeks.week_start_at,
        history.history_known_since,
        extract(epoch from weeks.week_end_at - weeks.week_start_at) as week_seconds,
        unknown_by_user.unknown_spans
            * tstzmultirange(tstzrange(weeks.week_start_at, weeks.week_end_at)) as missed_spans,
        unknown_by_user.unknown_spans
            * tstzmultirange(tstzrange(
                (weeks.week_start - 7)::timestamp at time zone weeks.time_zone,
                weeks.week_start_at
            )) as previous_week_missed_spans

    from weeks
    inner join history
        on weeks.user_id = history.user_id
    inner join unknown_by_user
        on weeks.user_id = unknown_by_user.user_id

),

measured as (

    select
        *,
        (
            select coalesce(sum(extract(epoch from upper(span) - lower(span))), 0)
            from unnest(missed_spans) as spans (span)
        ) as missed_seconds,
        not isempty(previous_week_missed_spans) as previous_week_has_missed_time

    from weeks_unknown

),

final as (

    select
        user_id,
        week_start,
        history_known_since,
        round(week_seconds / 3600, 1)::numeric(5, 1) as week_hours,
        round(missed_seconds / 3600, 1)::numeric(5, 1) as missed_hours,
        case
            when missed_seconds = 0 then 0
            -- plays in the covered hours, extrapolated to the missed ones (null: nothing covered)
            else round(plays * missed_seconds / nullif(week_seconds - missed_seconds, 0))
        end::int as estimated_missed_plays,
        case
            when week_start_at <= history_known_since then 'not_known'
            when previous_week_has_missed_time then 'partial'
            else 'covered'
        end as previous_week_coverage

    from measured

)

select * from final
