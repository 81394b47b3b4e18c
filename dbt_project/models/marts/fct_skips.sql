{#
    One row per skip event: an export row played for less than 30 s (stg_spotify__plays.is_skip).
    Only privacy exports know ms_played, so only they show skips; API polling never does.
    An account-data export and an extended-history export of the same period hold the same
    skip twice: the account-data row (played_at = the end truncated to the minute) is dropped
    when an extended-history skip of the same track, with the same ms_played, ended in that
    minute. Unresolved account-data skips keep their `name:track:…` track_id.
#}

with

skips as (

    select * from {{ ref('stg_spotify__plays') }}
    where is_skip

),

deduplicated as (

    select * from skips
    where not (
        is_account_data
        and exists (
            select 1
            from skips as copies
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
        loaded_at

    from deduplicated

)

select * from final
