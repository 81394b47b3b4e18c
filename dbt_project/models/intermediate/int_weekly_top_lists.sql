{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{{ delete_weeks_to_rebuild(this) }}"
    )
}}
-- depends_on: {{ ref('int_weekly_rebuild_scope') }}

{#
    The week's top 5 tracks, artists, albums and genres (int_weekly_top_items) as one jsonb
    array per kind, the shape the recap e-mail reads: one row per user and week.
    spotify_url links each track, artist or album on Spotify (as Spotify's design guidelines
    ask); null for one known only by the names an export gave (a `name:` id) and for genres.
#}

with

top_items as (

    select top_items.*
    from {{ ref('int_weekly_top_items') }} as top_items
    {{- weeks_to_rebuild('top_items') }}

),

final as (

    select
        user_id,
        week_start,
        {% for item_type in ['track', 'artist', 'album', 'genre'] %}
        coalesce(
            jsonb_agg(
                jsonb_build_object(
                    'rank', item_rank,
                    'id', item_id,
                    'name', item_name,
                    'artists', artist_names,
                    'plays', plays,
                    'minutes', round(ms_listened / 60000.0, 1),
                    'image_url', image_url,
                    'spotify_url', case
                        when item_type in ('track', 'artist', 'album') and item_id not like 'name:%'
                            then 'https://open.spotify.com/' || item_type || '/' || item_id
                    end
                )
                order by item_rank
            ) filter (where item_type = '{{ item_type }}'),
            '[]'::jsonb
        ) as top_{{ item_type }}s{{ "," if not loop.last }}
        {% endfor %}

    from top_items
    group by user_id, week_start

)

select * from final
