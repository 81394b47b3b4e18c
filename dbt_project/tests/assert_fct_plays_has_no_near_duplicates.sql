{{ config(severity='warn') }}

{#
    No two plays of the same user and track within 30 s of each other: fct_plays collapses
    those. An incremental load can only break this when the API copy of a play arrives after
    its export copy, across UTC midnight, on a day with no other plays; `dbt build
    --full-refresh -s fct_plays` repairs it. Warn, so the weekly recap is not held up.
    Checks the plays this run wrote (all of them in a full build) against every play, through
    the (user_id, track_id, played_at) index; a pair of two such plays is listed from both sides.
#}

select
    built.play_id,
    other.play_id as near_duplicate_play_id

from {{ ref('fct_plays') }} as built
inner join {{ ref('fct_plays') }} as other
    on built.user_id = other.user_id
    and built.track_id = other.track_id
    and other.played_at >= built.played_at - interval '30 seconds'
    and other.played_at <= built.played_at + interval '30 seconds'
    and built.play_id <> other.play_id
where built.built_at = {{ this_run() }}
