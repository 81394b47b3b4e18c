{#
    Whether a detected ingestion gap (app.ingest_gaps) overlaps each user's week, compared as
    instants: then some of that week's plays may be missing.
#}

with

weeks as (

    select * from {{ ref('int_weekly_totals') }}

),

ingest_gaps as (

    select * from {{ ref('stg_app__ingest_gaps') }}

),

final as (

    select
        weeks.user_id,
        weeks.week_start,
        count(ingest_gaps.ingest_gap_id)::int as ingest_gaps,
        count(ingest_gaps.ingest_gap_id) > 0 as has_gap

    from weeks
    left join ingest_gaps
        on weeks.user_id = ingest_gaps.user_id
        and ingest_gaps.gap_from < weeks.week_end_at
        and ingest_gaps.gap_to > weeks.week_start_at
    group by weeks.user_id, weeks.week_start

)

select * from final
