{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_play_days_to_rebuild(this) }}",
        post_hook=[
            "{{ ensure_index(this, ['user_id', 'played_on_utc']) }}",
            "{{ ensure_index(this, ['user_id', 'played_at']) }}",
            "{{ ensure_index(this, ['loaded_at']) }}",
            "{{ ensure_index(this, ['user_id', 'track_id', 'played_at']) }}",
            "{{ ensure_index(this, ['built_at']) }}"
        ]
    )
}}
-- fct_skips reads this model's watermark as the last build left it (plays_new_since): it runs first
-- depends_on: {{ ref('fct_skips') }}

{#
    One row per play (skip events, under 30 s, are fct_skips). The same play imported from a
    privacy export and polled from the API arrives with played_at a few seconds apart: plays
    of the same user and track whose played_at are within 30 s of the previous one form a
    cluster, and a cluster is ONE play (the api row wins, then demo, then export; ms_played is
    taken from any row that knows it).
    An account-data row (is_account_data: played_at is the end truncated to the minute) is
    up to 60 s EARLIER than its extended-history or polled copy: the row right after it, if it
    is not account data itself, joins its cluster when less than 60 s later. Two account-data
    rows never join on that rule (two plays of one track in consecutive minutes stay two), and
    an account-data row never joins a row whose ms_played is known and different.
    Once its name key is resolved, the row has the Spotify track id, so it meets its copies.

    Incremental: the (user, UTC day) partitions with newly loaded raw rows, plus the day on
    either side, are deleted (pre-hook) and rebuilt whole (play_days_to_rebuild), computed from
    the raw plays of one more day on either side so clusters across midnight are seen whole.
    A resolution (app.track_resolutions) re-keys old rows without reloading them: its
    resolved_at counts as a load time, so their days are rebuilt too.
    built_at: when the dbt run that wrote the row started (int_weekly_rebuild_scope: the weeks
    to recompute); a data test checks only the rows of its own run.
    An incremental build's plan is not compiled (JIT): for a few days of plays that cost more
    than it saved (1.4 s of 4.6 at 10M plays).
    Indexes (macros/ensure_index.sql, also on a table built before them): an incremental build
    deletes the (user, UTC day) partitions it rebuilds (without one: a 2 s scan at 10M plays)
    and reads the newest load time; the listener's page reads one user's plays of a time range
    (weekly_wrapped.page and the weekly models); the weekly discoveries look for one user's
    earlier plays of a track; the data tests read a run's rows.
#}

with

-- not materialized: an incremental build reads it twice, for a few days (materialized, it
-- would first copy every raw play)
plays as not materialized (

    select
        *,
        greatest(loaded_at, resolved_at) as changed_at

    from {{ ref('stg_spotify__plays') }}
    -- skip events are not plays (null: a unit test's row that does not say)
    where is_skip is not true

),

{% if is_incremental() %}

-- the days with plays loaded, or whose name key was resolved, since the last build
-- (plays_new_since: with an hour of overlap), and the day on either side
days_to_rebuild as (

    {{ play_days_to_rebuild() }}

),

-- their plays, and one more day's on either side, so that a cluster across midnight is seen whole
plays_in_scope as (

    {{ rows_spanning_days('plays', 'days_to_rebuild', 'played_on_utc', margin_days=1) }}

),

{% else %}

plays_in_scope as (

    select * from plays

),

{% endif %}

plays_with_previous as (

    select
        *,
        lag(played_at) over same_track as previous_played_at_same_track,
        coalesce(lag(is_account_data) over same_track, false) as previous_is_account_data,
        lag(ms_played) over same_track as previous_ms_played

    from plays_in_scope
    window same_track as (
        partition by user_id, track_id
        order by played_at, is_account_data desc
    )

),

plays_clustered as (

    select
        *,
        sum(
            case
                when previous_played_at_same_track is null then 1
                -- account data and another source: copies of one play agree on ms_played
                when (previous_is_account_data or is_account_data)
                    and ms_played <> previous_ms_played then 1
                when played_at - previous_played_at_same_track <= interval '30 seconds' then 0
                -- the copy of an account-data row (whose played_at is truncated to the minute)
                when previous_is_account_data
                    and is_account_data is not true
                    and played_at - previous_played_at_same_track < interval '60 seconds' then 0
                else 1
            end
        ) over (
            partition by user_id, track_id
            order by played_at, is_account_data desc
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
                -- an extended-history copy knows the second the play ended
                case when is_account_data then 1 else 0 end,
                played_at
        ) as rank_in_cluster,
        max(ms_played) over (partition by user_id, track_id, play_cluster) as cluster_ms_played,
        max(changed_at) over (partition by user_id, track_id, play_cluster) as cluster_loaded_at,
        max(track_name_key) over (partition by user_id, track_id, play_cluster) as cluster_track_name_key,
        bool_or(play_source = 'export') over (partition by user_id, track_id, play_cluster) as cluster_from_export,
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
        cluster_track_name_key as track_name_key,
        context_uri,

        ---------- text
        play_source,

        ---------- booleans
        coalesce(cluster_from_export, false) as from_export,

        ---------- numerics
        coalesce(ms_played, cluster_ms_played) as ms_played,
        (extract(epoch from (played_at - previous_played_at)) * 1000)::bigint as ms_since_previous_play,
        cluster_rows::int as source_rows,

        ---------- dates and timestamps
        (played_at at time zone 'UTC')::date as played_on_utc,
        played_at,
        ingested_at,
        cluster_loaded_at as loaded_at,
        {{ this_run() }} as built_at

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
