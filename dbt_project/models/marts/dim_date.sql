{# unique index on date_day: an incremental build's relationships tests look up a few thousand plays here, one by one (without it, a scan of the whole table for each: 12 s at 10M plays) #}
{{ config(indexes=[{'columns': ['date_day'], 'unique': true}]) }}

{#
    One row per calendar day, from Spotify's launch (2008) to two years ahead.
    week_start is the ISO week's Monday, the same rule wrapped_weekly uses in local time.
#}

with

days as (

    select day::date as date_day
    from generate_series(
        date '2008-01-01',
        (current_date + interval '2 years')::date,
        interval '1 day'
    ) as days (day)

),

final as (

    select
        date_day,
        extract(year from date_day)::int as year_number,
        extract(quarter from date_day)::int as quarter_number,
        extract(month from date_day)::int as month_number,
        to_char(date_day, 'FMMonth') as month_name,
        extract(day from date_day)::int as day_of_month,
        extract(isoyear from date_day)::int as iso_year,
        extract(week from date_day)::int as iso_week,
        extract(isodow from date_day)::int as iso_weekday,
        to_char(date_day, 'FMDay') as weekday_name,
        date_trunc('week', date_day)::date as week_start,
        extract(isodow from date_day) in (6, 7) as is_weekend

    from days

)

select * from final
