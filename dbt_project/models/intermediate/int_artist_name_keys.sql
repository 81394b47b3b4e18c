{#
    Name-only artists (`name:artist:…`, named by an export) that Spotify metadata has since
    shown under a real id: one row per name key whose name (NFC-normalised, trimmed, lower
    case, as contracts.name_key compares names) belongs to exactly one real artist. Tracks the
    export named (an unresolved account-data track, an extended-history track not fetched yet)
    keep crediting the name key; bridge_track_artist credits the real artist instead, so one
    artist is never counted twice once its metadata arrives. Ambiguous names stay name-only.
#}

with

artists as (

    select
        artist_id,
        lower(trim(normalize(artist_name, NFC))) as artist_name_normalized

    from {{ ref('stg_spotify__artists') }}

),

name_only as (

    select * from artists
    where artist_id like 'name:artist:%'

),

real_artists as (

    select * from artists
    where artist_id not like 'name:%'

),

final as (

    select
        name_only.artist_id as artist_name_key,
        min(real_artists.artist_id) as artist_id

    from name_only
    inner join real_artists
        on name_only.artist_name_normalized = real_artists.artist_name_normalized
    group by name_only.artist_id
    having count(distinct real_artists.artist_id) = 1

)

select * from final
