{#
    A post-hook that gives `relation` an index on `columns` unless it has one: unlike the
    `indexes` config, which dbt applies to an incremental model only when it creates it or
    fully refreshes it (dbt-core#9510), this also reaches a table built before the index was
    added. Unnamed, so Postgres picks a free name (a backup table of a full refresh may still
    hold the old one's).
#}
{% macro ensure_index(relation, columns) -%}
do $ensure_index$
begin
    if not exists (
        select 1
        from pg_index
        where indrelid = '{{ relation }}'::regclass
            and pg_get_indexdef(indexrelid) like '%({{ columns | join(", ") }})'
    ) then
        create index on {{ relation }} ({{ columns | join(", ") }});
    end if;
end
$ensure_index$
{%- endmacro %}
