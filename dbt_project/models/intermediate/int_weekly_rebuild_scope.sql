{{
    config(
        post_hook=["create index on {{ this }} (user_id)", "analyze {{ this }}"]
    )
}}

{#
    The weeks this build recomputes, per user: every local week from rebuild_from_week on
    (rebuild_from: that Monday 00:00 in the user's time zone). The incremental weekly models
    (macros/weeks_to_rebuild.sql) delete and recompute exactly those; a user with no row here
    keeps every week as it is.

    What changed since the last build that got as far as wrapped_weekly (its built_at: a build
    that failed before it leaves its changes to the next one):
    - plays fct_plays rebuilt (built_at), from a day before the first of them: a copy merged
      into a play after midnight leaves the day before;
    - skip events loaded (they are also history: int_user_history);
    - plays of tracks whose metadata changed: the track's, its artists' (or their genres'),
      its album's;
    - ingest gaps detected (the coverage of their weeks);
    - a user who is new to wrapped_weekly, or whose time zone changed: all their weeks.
    Load times are compared with an hour's overlap (a row committed late is not missed;
    recomputing a week is idempotent). Without an earlier build, every user's every week.
#}

-- depends_on: {{ ref('fct_plays') }}, {{ ref('fct_skips') }}, {{ ref('dim_track') }}, {{ ref('bridge_track_artist') }}
-- depends_on: {{ ref('stg_spotify__tracks') }}, {{ ref('stg_spotify__artists') }}, {{ ref('stg_spotify__albums') }}, {{ ref('stg_app__artist_genres') }}, {{ ref('stg_app__ingest_gaps') }}
{%- set previous = previous_build_of('wrapped_weekly') -%}
{%- if previous is not none
        and 'built_at' not in (adapter.get_columns_in_relation(previous) | map(attribute='name') | list) -%}
    {#- built before wrapped_weekly had built_at: nothing says what it saw -#}
    {%- set previous = none -%}
{%- endif %}

with

users as (

    select * from {{ ref('dim_user') }}

),

{% if previous is none %}

changes as (

    select
        user_id,
        '-infinity'::timestamptz as changed_from

    from users

),

{% else %}

previous_weeks as (

    select * from {{ previous }}

),

previous_build as (

    select
        max(built_at) as built_at,
        max(built_at) - interval '1 hour' as loaded_after

    from previous_weeks

),

changed_artists as (

    select artist_id
    from {{ ref('stg_spotify__artists') }}
    where loaded_at > (select loaded_after from previous_build)

    union

    select artist_id
    from {{ ref('stg_app__artist_genres') }}
    where fetched_at > (select loaded_after from previous_build)

),

changed_tracks as (

    select track_id
    from {{ ref('stg_spotify__tracks') }}
    where loaded_at > (select loaded_after from previous_build)

    union

    select track_id
    from {{ ref('bridge_track_artist') }}
    where artist_id in (select artist_id from changed_artists)

    union

    select track_id
    from {{ ref('dim_track') }}
    where album_id in (
        select album_id
        from {{ ref('stg_spotify__albums') }}
        where loaded_at > (select loaded_after from previous_build)
    )

),

changes as (

    select
        user_id,
        min(played_at) - interval '1 day' as changed_from

    from {{ ref('fct_plays') }}
    where built_at > (select built_at from previous_build)
    group by user_id

    union all

    select
        user_id,
        min(skipped_at) as changed_from

    from {{ ref('fct_skips') }}
    where loaded_at > (select loaded_after from previous_build)
    group by user_id

    union all

    select
        user_id,
        min(played_at) as changed_from

    from {{ ref('fct_plays') }}
    where track_id in (select track_id from changed_tracks)
    group by user_id

    union all

    select
        user_id,
        min(gap_from) as changed_from

    from {{ ref('stg_app__ingest_gaps') }}
    where detected_at > (select loaded_after from previous_build)
    group by user_id

    union all

    select
        users.user_id,
        '-infinity'::timestamptz as changed_from

    from users
    where not exists (
        select 1
        from previous_weeks
        where previous_weeks.user_id = users.user_id
            and previous_weeks.time_zone = users.time_zone
    )

),

{% endif %}

first_changes as (

    select
        users.user_id,
        users.time_zone,
        date_trunc('week', min(changes.changed_from) at time zone users.time_zone)::date as rebuild_from_week

    from changes
    inner join users
        on changes.user_id = users.user_id
    group by users.user_id, users.time_zone

),

final as (

    select
        user_id,
        time_zone,
        rebuild_from_week,
        rebuild_from_week::timestamp at time zone time_zone as rebuild_from

    from first_changes

)

select * from final
