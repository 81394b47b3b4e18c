{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'played_on_utc'],
        on_schema_change='append_new_columns'
    )
}}

{#
    One row per play. The same play imported from a privacy export and polled from the API
    arrives with played_at a few seconds apart: plays of the same user and track whose
    played_at are within 30 s of the previous one form a cluster, and a cluster is ONE play
    (the api row wins, then demo, then export; ms_played is taken from any row that knows it).

    Incremental: the (user, UTC day) partitions with newly loaded raw rows, plus the day on
    either side, are rebuilt whole (delete+insert on user_id + played_on_utc), computed from
    the raw plays of one more day on either side so clusters across midnight are seen whole.
#}

with

plays as (

    select * from {{ ref('stg_spotify__plays') }}

),

{% if is_incremental() %}

new_play_days as (

    select distinct
        user_id,
        (played_at at time zone 'UTC')::date as played_on_utc

    from plays
    -- an hour of overlap: rows whose transaction committed late are not missed (reloading is idempotent)
    where loaded_at > (
        select coalesce(max(loaded_at), '-infinity'::timestamptz) - interval '1 hour'
        from {{ this }}
    )

),

days_to_rebuild as (

    select distinct
        new_play_days.user_id,
        new_play_days.played_on_utc + day_offsets.day_offset as played_on_utc

    from new_play_days
    cross join (values (-1), (0), (1)) as day_offsets (day_offset)

),

scope_bounds as (

    select
        user_id,
        (min(played_on_utc) - 1)::timestamp at time zone 'UTC' as scope_from,
        (max(played_on_utc) + 2)::timestamp at time zone 'UTC' as scope_to

    from days_to_rebuild
    group by user_id

),

plays_in_scope as (

    select plays.*

    from plays
    inner join scope_bounds
        on plays.user_id = scope_bounds.user_id
        and plays.played_at >= scope_bounds.scope_from
        and plays.played_at < scope_bounds.scope_to

),

{% else %}

plays_in_scope as (

    select * from plays

),

{% endif %}

plays_with_previous as (

    select
        *,
        lag(played_at) over (
            partition by user_id, track_id
            order by played_at
        ) as previous_played_at_same_track

    from plays_in_scope

),

plays_clustered as (

    select
        *,
        sum(
            case
                when previous_played_at_same_track is null then 1
                when played_at - previous_played_at_same_track > interval '30 seconds' then 1
                else 0
            end
        ) over (
            partition by user_id, track_id
            order by played_at
            rows between unbounded preceding and current row
        ) as play_cluster

    from plays_with_previous

),

plays_ranked as (

    select
        *,
        row_number() over (
            partition by user_id, track_id, play_cluster
            order by
                case play_source when 'api' then 1 when 'demo' then 2 when 'export' then 3 else 4 end,
                played_at
        ) as rank_in_cluster,
        max(ms_played) over (partition by user_id, track_id, play_cluster) as cluster_ms_played,
        max(loaded_at) over (partition by user_id, track_id, play_cluster) as cluster_loaded_at,
        count(*) over (partition by user_id, track_id, play_cluster) as cluster_rows

    from plays_clustered

),

deduplicated as (

    select * from plays_ranked
    where rank_in_cluster = 1

),

plays_with_gap as (

    select
        *,
        lag(played_at) over (
            partition by user_id
            order by played_at, track_id
        ) as previous_played_at

    from deduplicated

),

final as (

    select

        ----------  ids
        md5(
            user_id || '|' || track_id || '|'
            || to_char(played_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
        ) as play_id,
        user_id,
        track_id,
        context_uri,

        ---------- text
        play_source,

        ---------- numerics
        coalesce(ms_played, cluster_ms_played) as ms_played,
        (extract(epoch from (played_at - previous_played_at)) * 1000)::bigint as ms_since_previous_play,
        cluster_rows::int as source_rows,

        ---------- dates and timestamps
        (played_at at time zone 'UTC')::date as played_on_utc,
        played_at,
        ingested_at,
        cluster_loaded_at as loaded_at

    from plays_with_gap

    {% if is_incremental() %}
    where exists (
        select 1
        from days_to_rebuild
        where days_to_rebuild.user_id = plays_with_gap.user_id
            and days_to_rebuild.played_on_utc = (plays_with_gap.played_at at time zone 'UTC')::date
    )
    {% endif %}

)

select * from final
