{#
    Cross-column invariant: fails with every row where `expression` is not true.
    Our small stand-in for dbt_utils.expression_is_true (the package hub is not reachable).

        data_tests:
          - expression_is_true:
              arguments:
                expression: "distinct_tracks <= plays"
#}
{% test expression_is_true(model, expression) %}

select *
from {{ model }}
where not coalesce(({{ expression }}), false)

{% endtest %}
