{#
    One row per raw play or skip event. Two rules are applied here, once for everything
    downstream:
    - plays and skips: a row with ms_played known and under var('min_play_ms') (30 s,
      contracts.MIN_PLAY_MS) is a skip event (is_skip), not a play; the API never knows
      ms_played, so its rows are plays;
    - name keys: an account-data export row's track_id is `name:track:…`; when
      app.track_resolutions has resolved it, track_id is the Spotify id and track_name_key
      keeps the origin.
#}

with

source as (

    select * from {{ source('spotify', 'plays') }}

),

resolutions as (

    select * from {{ ref('stg_app__track_resolutions') }}
    where is_resolved

),

renamed as (

    select

        ----------  ids
        source.user_id,
        coalesce(resolutions.track_id, source.track_id) as track_id,
        case when source.track_id like 'name:track:%' then source.track_id end as track_name_key,
        source.context_uri,

        ---------- text
        source.source as play_source,
        source.reason_end,

        ---------- numerics
        source.ms_played,

        ---------- booleans
        coalesce(source.ms_played < {{ var('min_play_ms') }}, false) as is_skip,
        -- an account-data row: exported, known by name, played_at = the end truncated to the
        -- minute (up to 60 s before the same play's extended-history or polled copy)
        (
            source.source = 'export'
            and source.track_id like 'name:track:%'
            and source.played_at = date_trunc('minute', source.played_at)
        ) as is_account_data,
        source.shuffle,
        source.offline,

        ---------- timestamps
        source.played_at,
        source.ingested_at,
        source.loaded_at,
        resolutions.resolved_at

    from source
    left join resolutions
        on source.track_id = resolutions.track_name_key

)

select * from renamed
