{#
    Incremental weekly models. The weekly models that read plays, and wrapped_weekly, keep
    the weeks the last build left them and recompute only what int_weekly_rebuild_scope
    names: per user, every local week from rebuild_from_week on (a change in one week can
    change the weeks after it: streaks, discoveries, the comparison with the week before).
    A full build (the model's first, or --full-refresh) computes every week, with no scope.

    Each such model:
        {{ config(materialized='incremental', incremental_strategy='append',
                  pre_hook="{{ delete_weeks_to_rebuild(this) }}") }}
        -- depends_on: {{ ref('int_weekly_rebuild_scope') }}
    and reads its plays and weeks through plays_to_rebuild / weeks_to_rebuild.
#}

{# The instant this dbt run started: stamps what it built (fct_plays.built_at, wrapped_weekly.built_at). #}
{% macro this_run() -%}
    '{{ run_started_at }}'::timestamptz
{%- endmacro %}

{#
    pre-hook: the kept rows of the weeks this build recomputes go first (the new rows are
    appended). An incremental build reads a few weeks of plays: compiling its plans (JIT)
    would cost more than it saves (int_weekly_top_items at 10M plays: 3.2 s -> 1.9 s).
#}
{% macro delete_weeks_to_rebuild(relation) -%}
    {%- if is_incremental() -%}
    set local jit = off;
    delete from {{ relation }} as kept
    using {{ ref('int_weekly_rebuild_scope') }} as rebuild_scope
    where kept.user_id = rebuild_scope.user_id
        and kept.week_start >= rebuild_scope.rebuild_from_week
    {%- endif -%}
{%- endmacro %}

{#
    A join keeping the rows of `alias` (with user_id and an instant `column`) that fall in the
    weeks to rebuild. The earliest of them is also written in as a constant: Postgres then
    estimates the rows from its statistics and reads an hour's plays through an index, where it
    would guess a third of ten million from the join condition alone.
#}
{% macro plays_to_rebuild(alias, column='played_at') -%}
    {%- if is_incremental() %}
    inner join {{ ref('int_weekly_rebuild_scope') }} as rebuild_scope
        on {{ alias }}.user_id = rebuild_scope.user_id
        and {{ alias }}.{{ column }} >= rebuild_scope.rebuild_from
        and {{ alias }}.{{ column }} >= {{ earliest_rebuild_from() }}
    {%- endif -%}
{%- endmacro %}

{% macro earliest_rebuild_from() -%}
    {%- if execute -%}
        {%- set earliest = run_query(
            "select coalesce(min(rebuild_from), 'infinity')::text from " ~ ref('int_weekly_rebuild_scope')
        ).columns[0].values()[0] -%}
        '{{ earliest }}'::timestamptz
    {%- else -%}
        '-infinity'::timestamptz
    {%- endif -%}
{%- endmacro %}

{# A join keeping the rows of `alias` of the users with weeks to rebuild (all of their rows). #}
{% macro users_to_rebuild(alias) -%}
    {%- if is_incremental() %}
    inner join {{ ref('int_weekly_rebuild_scope') }} as rebuild_scope
        on {{ alias }}.user_id = rebuild_scope.user_id
    {%- endif -%}
{%- endmacro %}

{# A join keeping the rows of `alias` (with user_id, week_start) that are weeks to rebuild. #}
{% macro weeks_to_rebuild(alias) -%}
    {%- if is_incremental() %}
    inner join {{ ref('int_weekly_rebuild_scope') }} as rebuild_scope
        on {{ alias }}.user_id = rebuild_scope.user_id
        and {{ alias }}.week_start >= rebuild_scope.rebuild_from_week
    {%- endif -%}
{%- endmacro %}

{# The instant the weeks to rebuild start for the user `user_id_sql` names (in an incremental build). #}
{% macro rebuild_from_of(user_id_sql) -%}
    (
        select rebuild_scope.rebuild_from
        from {{ ref('int_weekly_rebuild_scope') }} as rebuild_scope
        where rebuild_scope.user_id = {{ user_id_sql }}
    )
{%- endmacro %}

{#
    A model's relation as the last build left it, without a ref: for a model that runs
    before it in the build (a ref would be a cycle). None when it does not exist yet.
#}
{% macro previous_build_of(model_name) -%}
    {%- if execute -%}
        {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.name == model_name -%}
            {{ return(adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias)) }}
        {%- endfor -%}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}

{#
    The load time from which raw plays are new to this build, as a constant: fct_plays' newest
    load time as the last build left it, less an hour of overlap (a row committed late is not
    missed; rebuilding is idempotent); '-infinity' in a full build. A constant rather than a
    subquery: Postgres then reads the hour's rows of raw.plays through its loaded_at index,
    where for a subquery's value it guesses a third of ten million rows and reads them all.
#}
{% macro plays_new_since() -%}
    {%- set previous = previous_build_of('fct_plays') -%}
    {%- if not execute or previous is none or flags.FULL_REFRESH -%}
        {{ return("'-infinity'::timestamptz") }}
    {%- endif -%}
    {%- set newest = run_query(
        "select coalesce(max(loaded_at) - interval '1 hour', '-infinity')::text from " ~ previous
    ).columns[0].values()[0] -%}
    {{ return("'" ~ newest ~ "'::timestamptz") }}
{%- endmacro %}

{#
    A data test's `where`, with __this_run__ standing for this_run(): `built_at = __this_run__`
    checks only the rows this run wrote (every row in a full build, the rebuilt days in an
    incremental one), so the play-grain tests of an hourly build do not read ten million rows.
    On raw plays, __new_plays__ stands for plays_new_since(): `loaded_at > __new_plays__` checks
    the rows loaded since the last build (all of them in a full build).
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- if '__new_plays__' in where -%}
            {%- set where = where | replace('__new_plays__', plays_new_since()) -%}
        {%- endif -%}
        {{ return('(select * from ' ~ relation ~ ' where ' ~ (where | replace('__this_run__', this_run())) ~ ') dbt_subquery') }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}
