{{ config(severity='warn') }}

{#
    No two plays of the same user and track within 30 s of each other: fct_plays collapses
    those. An incremental load can only break this when the API copy of a play arrives after
    its export copy, across UTC midnight, on a day with no other plays; `dbt build
    --full-refresh -s fct_plays` repairs it. Warn, so the weekly recap is not held up.
#}

select
    earlier.play_id,
    later.play_id as near_duplicate_play_id

from {{ ref('fct_plays') }} as earlier
inner join {{ ref('fct_plays') }} as later
    on earlier.user_id = later.user_id
    and earlier.track_id = later.track_id
    and later.played_at >= earlier.played_at
    and later.played_at <= earlier.played_at + interval '30 seconds'
    and earlier.play_id <> later.play_id
