{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'skipped_on_utc'],
        on_schema_change='append_new_columns',
        pre_hook="{% if is_incremental() %}set local jit = off{% endif %}",
        post_hook="{{ ensure_index(this, ['user_id', 'skipped_on_utc']) }}"
    )
}}

{#
    One row per skip event: an export row played for less than 30 s (stg_spotify__plays.is_skip).
    Only privacy exports know ms_played, so only they show skips; API polling never does.
    An account-data export and an extended-history export of the same period hold the same
    skip twice: the account-data row (played_at = the end truncated to the minute) is dropped
    when an extended-history skip of the same track, with the same ms_played, ended in that
    minute. Unresolved account-data skips keep their `name:track:…` track_id.

    Incremental: the (user, UTC day) partitions with skips loaded or resolved since the last
    build are rebuilt whole (delete+insert). A copy ends in its account-data row's minute, so
    on its day: each day rebuilt keeps at least one of its new rows or their copies. The
    watermark is fct_plays' as the last build left it (plays_new_since; fct_plays runs after
    this model for that): this table's own newest load time would lag by months once the
    listeners' exports are in, and every skip would be read again each hour. built_at: when
    the dbt run that wrote the row started; the data tests check only the rows of their run.
#}

with

-- not materialized: an incremental build reads it twice, for a few days
skips as not materialized (

    select * from {{ ref('stg_spotify__plays') }}
    where is_skip

),

{% if is_incremental() %}
days_to_rebuild as (

    {{ utc_days_changed_since('skips', plays_new_since(), 'skipped_on_utc') }}

),

skips_in_scope as (

    {{ rows_spanning_days('skips', 'days_to_rebuild', 'skipped_on_utc') }}

),
{% else %}
skips_in_scope as (

    select * from skips

),
{% endif %}

deduplicated as (

    select * from skips_in_scope as skips
    where not (
        is_account_data
        and exists (
            select 1
            from skips_in_scope as copies
            where copies.user_id = skips.user_id
                and copies.track_id = skips.track_id
                and copies.ms_played = skips.ms_played
                and not copies.is_account_data
                and copies.played_at >= skips.played_at
                and copies.played_at < skips.played_at + interval '60 seconds'
        )
    )

),

final as (

    select

        ----------  ids
        md5(
            user_id || '|' || track_id || '|'
            || to_char(played_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
        ) as skip_id,
        user_id,
        track_id,
        track_name_key,
        context_uri,

        ---------- text
        play_source,
        reason_end,

        ---------- booleans
        shuffle,
        offline,

        ---------- numerics
        ms_played,

        ---------- dates and timestamps
        (played_at at time zone 'UTC')::date as skipped_on_utc,
        played_at as skipped_at,
        ingested_at,
        loaded_at,
        {{ this_run() }} as built_at

    from deduplicated
    {% if is_incremental() %}
    where exists (
        select 1
        from days_to_rebuild
        where days_to_rebuild.user_id = deduplicated.user_id
            and days_to_rebuild.skipped_on_utc = (deduplicated.played_at at time zone 'UTC')::date
    )
    {% endif %}

)

select * from final
