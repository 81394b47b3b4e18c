{# indexed on artist_id: the weekly discoveries look up an artist's tracks #}
{{
    config(
        post_hook="{{ ensure_index(this, ['artist_id']) }}"
    )
}}

with

tracks as (

    select * from {{ ref('stg_spotify__tracks') }}

),

artist_name_keys as (

    select * from {{ ref('int_artist_name_keys') }}

),

credits as (

    select
        tracks.track_id,
        -- a name-only artist whose real id is known by now is credited under that id
        coalesce(artist_name_keys.artist_id, credited.artist_id) as artist_id,
        credited.artist_position

    from tracks
    cross join lateral unnest(tracks.artist_ids) with ordinality as credited (artist_id, artist_position)
    left join artist_name_keys
        on credited.artist_id = artist_name_keys.artist_name_key
    where credited.artist_id is not null

),

-- an artist listed twice on one track keeps its first position
deduplicated as (

    select
        track_id,
        artist_id,
        min(artist_position)::int as artist_position

    from credits
    group by track_id, artist_id

),

final as (

    select
        track_id || '|' || artist_id as track_artist_id,
        track_id,
        artist_id,
        artist_position,
        artist_position = 1 as is_primary_artist

    from deduplicated

)

select * from final
