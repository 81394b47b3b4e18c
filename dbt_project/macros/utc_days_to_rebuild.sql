{#
    fct_plays and fct_skips rebuild, in an incremental build, whole (user, UTC day) partitions:
    those of the raw rows loaded, or whose name key was resolved, since the last build.
#}

{#
    The (user_id, UTC day) of every row of `rows` (stg_spotify__plays rows: a CTE, or an aliased
    subquery) loaded or resolved since `new_since` (plays_new_since). Two selects, each able to
    use its own index, where one `or` reads all.
#}
{% macro utc_days_changed_since(rows, new_since, day_column) -%}
    select
        user_id,
        (played_at at time zone 'UTC')::date as {{ day_column }}

    from {{ rows }}
    where loaded_at > {{ new_since }}

    union

    select
        user_id,
        (played_at at time zone 'UTC')::date as {{ day_column }}

    from {{ rows }}
    where resolved_at > {{ new_since }}
{%- endmacro %}

{#
    The rows of `rows` (with user_id, played_at) that a user's days in `days` (with user_id and
    `day_column`, UTC dates) span, widened by `margin_days` on either side: from the first
    day's start to the last day's end. User by user (`offset 0` keeps Postgres from folding the
    lateral back into a plain join): each user's range through raw.plays' primary key, where a
    join reads all ten million rows.
#}
{% macro rows_spanning_days(rows, days, day_column, margin_days=0) -%}
    select rows_of_user.*

    from (
        select
            user_id,
            (min({{ day_column }}) - {{ margin_days }})::timestamp at time zone 'UTC' as range_from,
            (max({{ day_column }}) + 1 + {{ margin_days }})::timestamp at time zone 'UTC' as range_to
        from {{ days }}
        group by user_id
    ) as user_ranges
    cross join lateral (
        select *
        from {{ rows }}
        where {{ rows }}.user_id = user_ranges.user_id
            and {{ rows }}.played_at >= user_ranges.range_from
            and {{ rows }}.played_at < user_ranges.range_to
        offset 0
    ) as rows_of_user
{%- endmacro %}

{#
    fct_plays' days to rebuild: the days of the plays loaded or resolved since its last build,
    and the day on either side. Both the model (which rebuilds them) and its pre-hook (which
    deletes them first) read it: a day can be left with no play at all, when its one play's
    kept copy moves past midnight (an API copy at 00:00:03 arriving after the export's copy at
    23:59:55), and delete+insert would empty only the days it writes rows to.
#}
{% macro play_days_to_rebuild() -%}
    {%- set plays = '(select * from ' ~ ref('stg_spotify__plays') ~ ' where is_skip is not true) as plays' -%}
    select distinct
        new_play_days.user_id,
        new_play_days.played_on_utc + day_offsets.day_offset as played_on_utc

    from (
        {{ utc_days_changed_since(plays, plays_new_since(), 'played_on_utc') }}
    ) as new_play_days
    cross join (values (-1), (0), (1)) as day_offsets (day_offset)
{%- endmacro %}

{# fct_plays' pre-hook: the kept plays of the days an incremental build rebuilds go first. #}
{% macro delete_play_days_to_rebuild(relation) -%}
    {%- if is_incremental() -%}
    set local jit = off;
    delete from {{ relation }} as kept
    using ({{ play_days_to_rebuild() }}) as days_to_rebuild
    where kept.user_id = days_to_rebuild.user_id
        and kept.played_on_utc = days_to_rebuild.played_on_utc
    {%- endif -%}
{%- endmacro %}
