"""A small, hand-checkable listening history in two time zones (Berlin UTC+1, Tokyo UTC+9).

Every expected number in test_wrapped_weekly.py is worked out in the comments here.
Track lengths: Heroes 6:00, Under Pressure 4:00, Bohemian Rhapsody 5:00, Says 8:00.
Listened time (docs/recap.md): ms_played if known, else the length (3.5 min = 210000 ms while
it is unknown), either capped by the time since the previous play ended.
"""

from __future__ import annotations

USERS = [
    # user_id, email, time_zone
    ("berlin", "berlin@example.com", "Europe/Berlin"),
    ("tokyo", "tokyo@example.com", "Asia/Tokyo"),
]

ARTISTS = [
    # artist_id, name, genres (None: Spotify gave none), image_url
    ("a_bowie", "David Bowie", ["art rock", "glam rock"], "https://i.scdn.co/image/bowie"),
    ("a_queen", "Queen", ["rock", "glam rock"], None),
    ("a_nils", "Nils Frahm", None, None),
]

ALBUMS = [
    # album_id, name, artist_ids, image_url
    ("al_heroes", "Heroes", ["a_bowie"], "https://i.scdn.co/image/heroes"),
    ("al_opera", "A Night at the Opera", ["a_queen"], "https://i.scdn.co/image/opera"),
    ("al_spaces", "Spaces", ["a_nils"], None),
]

TRACKS = [
    # track_id, name, duration_ms, album_id, artist_ids
    ("t_heroes", "Heroes", 360_000, "al_heroes", ["a_bowie"]),
    ("t_pressure", "Under Pressure", 240_000, "al_opera", ["a_queen", "a_bowie"]),
    ("t_bohemian", "Bohemian Rhapsody", 300_000, "al_opera", ["a_queen"]),
    ("t_says", "Says", 480_000, "al_spaces", ["a_nils"]),
    # t_unknown: played, but its metadata never arrived
]

PLAYS = [
    # user_id, played_at (UTC, end of play), track_id, source, ms_played
    # --- berlin, history known since Mon 2026-08-31 10:00 (an exported play): the first whole
    # week is 09-07, so from the week of 11-02 (8 whole weeks later) discoveries are claimed
    ("berlin", "2026-08-31 08:00:00+00", "t_heroes", "export", 200_000),
    # --- berlin, week of Mon 2026-11-09 (local) --------------------------------- 2 plays, 10.0 min
    ("berlin", "2026-11-10 19:00:00+00", "t_heroes", "api", None),  # Tue 20:00; 360000
    ("berlin", "2026-11-10 19:04:00+00", "t_pressure", "api", None),  # 4 min later: 240000
    # --- berlin, week of Mon 2026-11-16 ---------------------------------------- 7 plays, 25.0 min
    ("berlin", "2026-11-16 07:00:00+00", "t_heroes", "api", None),  # Mon 08:00 ...
    ("berlin", "2026-11-16 07:00:06+00", "t_heroes", "export", 200_000),  # ... same play: 200000
    ("berlin", "2026-11-16 07:05:00+00", "t_bohemian", "api", None),  # Mon 08:05; 300000
    ("berlin", "2026-11-17 07:05:00+00", "t_bohemian", "api", None),  # Tue 08:05; 300000
    ("berlin", "2026-11-17 07:09:00+00", "t_pressure", "api", None),  # Tue 08:09; 240000
    ("berlin", "2026-11-19 20:00:00+00", "t_says", "export", 100_000),  # Thu 21:00; 100000
    ("berlin", "2026-11-22 22:30:00+00", "t_bohemian", "api", None),  # Sun 23:30, still this week; 300000
    ("berlin", "2026-11-22 22:31:00+00", "t_pressure", "api", None),  # skipped after 60 s: 60000
    # --- tokyo ------------------------------------------------------------------------------
    ("tokyo", "2026-11-22 14:00:00+00", "t_unknown", "api", None),  # Sun 23:00 JST, week 11-16; 210000
    ("tokyo", "2026-11-22 15:10:00+00", "t_says", "api", None),  # Mon 00:10 JST: week 11-23; 480000
    ("tokyo", "2026-11-23 15:30:00+00", "t_says", "api", None),  # Tue 00:30 JST; 480000
    ("tokyo", "2026-11-24 12:00:00+00", "t_heroes", "export", 400_000),  # Tue 21:00; ms_played 400000
]

INGEST_GAPS = [
    # user_id, gap_from, gap_to: Fri 2026-11-20 11:00-12:00 Berlin, inside berlin's week of 11-16
    ("berlin", "2026-11-20 10:00:00+00", "2026-11-20 11:00:00+00"),
]

# Loaded by a later batch (the incremental test): the export copy of berlin's Sunday 23:30
# play (9 s later, knows ms_played) and a brand-new play on Monday 2026-11-23.
LATE_PLAYS = [
    ("berlin", "2026-11-22 22:30:09+00", "t_bohemian", "export", 150_000),
    ("berlin", "2026-11-23 08:00:00+00", "t_says", "api", None),
]


# --- lisbon: a week imported from privacy exports (Europe/Lisbon = UTC in November) ------
# The extended history names the album and artist but has no ids for them: the track points
# at name-only entities (contracts.name_key ids, fetched_at = epoch 0) until Spotify metadata
# replaces the raw.tracks row. Account-data rows are keyed `name:track:…` by their names.
EXPORT_USER = ("lisbon", "lisbon@example.com", "Europe/Lisbon")
NAME_ARTIST = "name:artist:5f0c1d0e9a8b7c6d5e4f"
NAME_ALBUM = "name:album:0a1b2c3d4e5f60718293"
RESOLVED_KEY = "name:track:11111111111111111111"  # resolved to t_svefn
PENDING_KEY = "name:track:22222222222222222222"  # not resolved (yet)
NAME_ONLY_ARTISTS = [(NAME_ARTIST, "Sigur Rós")]
NAME_ONLY_ALBUMS = [(NAME_ALBUM, "Ágætis byrjun", [NAME_ARTIST])]
NAME_ONLY_TRACKS = [
    # track_id, name, duration_ms, album_id, artist_ids: extended history (a Spotify id) ...
    ("t_svefn", "Svefn-g-englar", None, NAME_ALBUM, [NAME_ARTIST]),
    # ... and account data (names only: no album, the track's own name key)
    (RESOLVED_KEY, "Svefn-g-englar", None, None, [NAME_ARTIST]),
    (PENDING_KEY, "Starálfur", None, None, [NAME_ARTIST]),
]
TRACK_RESOLUTIONS = [
    # name_key, artist, track, track_id, status
    (RESOLVED_KEY, "Sigur Rós", "Svefn-g-englar", "t_svefn", "resolved"),
    (PENDING_KEY, "Sigur Rós", "Starálfur", None, "pending"),
]
EXPORT_PLAYS = [
    # user_id, played_at, track_id, source, ms_played, reason_end, shuffle, offline
    # week of Mon 2026-11-16: 4 plays, 2 skips (skip rate 2 / 6 = 0.3333)
    ("lisbon", "2026-11-17 10:00:00+00", "t_svefn", "export", 400_000, "trackdone", False, False),  # play
    ("lisbon", "2026-11-17 10:10:00+00", "t_svefn", "export", 5_000, "fwdbtn", True, False),  # skip
    ("lisbon", "2026-11-17 10:20:00+00", "t_svefn", "export", 300_000, "trackdone", False, True),  # play
    # account data (end truncated to the minute) and the extended copy 41 s later: one play
    ("lisbon", "2026-11-18 09:00:00+00", RESOLVED_KEY, "export", 250_000, None, None, None),
    ("lisbon", "2026-11-18 09:00:41+00", "t_svefn", "export", 250_000, "trackdone", False, False),
    # account data, not resolved: a play of its own under the name key (ranked by its names)
    ("lisbon", "2026-11-18 12:00:00+00", PENDING_KEY, "export", 200_000, None, None, None),
    # a skip in both exports: one skip event
    ("lisbon", "2026-11-19 08:00:00+00", RESOLVED_KEY, "export", 3_000, None, None, None),
    ("lisbon", "2026-11-19 08:00:12+00", "t_svefn", "export", 3_000, "fwdbtn", True, False),
]


def seed_export_history(conn) -> None:
    """The lisbon user's exported week: name-only entities, account data, skips."""
    with conn.cursor() as cur:
        cur.execute(
            "insert into app.users (user_id, email, time_zone, display_name, consent_at, email_confirmed_at)"
            " values (%s, %s, %s, 'Lisbon', now(), now())",
            EXPORT_USER,
        )
        for artist_id, name in NAME_ONLY_ARTISTS:
            cur.execute(
                "insert into raw.artists (artist_id, name, fetched_at) values (%s, %s, to_timestamp(0))",
                (artist_id, name),
            )
        for album_id, name, artist_ids in NAME_ONLY_ALBUMS:
            cur.execute(
                "insert into raw.albums (album_id, name, artist_ids, fetched_at) values (%s, %s, %s, to_timestamp(0))",
                (album_id, name, artist_ids),
            )
        for track_id, name, duration_ms, album_id, artist_ids in NAME_ONLY_TRACKS:
            cur.execute(
                "insert into raw.tracks (track_id, name, duration_ms, album_id, artist_ids, fetched_at)"
                " values (%s, %s, %s, %s, %s, to_timestamp(0))",
                (track_id, name, duration_ms, album_id, artist_ids),
            )
        for name_key, artist, track, track_id, status in TRACK_RESOLUTIONS:
            cur.execute(
                "insert into app.track_resolutions (name_key, artist_name, track_name, user_id, track_id, status,"
                " resolved_at) values (%s, %s, %s, 'lisbon', %s, %s,"
                " case when %s = 'resolved' then now() end)",
                (name_key, artist, track, track_id, status, status),
            )
        for user_id, played_at, track_id, source, ms_played, reason_end, shuffle, offline in EXPORT_PLAYS:
            cur.execute(
                "insert into raw.plays (user_id, played_at, track_id, source, ms_played, reason_end, shuffle,"
                " offline, ingested_at) values (%s, %s, %s, %s, %s, %s, %s, %s, now())",
                (user_id, played_at, track_id, source, ms_played, reason_end, shuffle, offline),
            )


def seed_listening_history(conn) -> None:
    with conn.cursor() as cur:
        for user_id, email, time_zone in USERS:
            cur.execute(
                "insert into app.users (user_id, email, time_zone, display_name, consent_at, email_confirmed_at)"
                " values (%s, %s, %s, %s, now(), now())",
                (user_id, email, time_zone, user_id.title()),
            )
        for artist_id, name, genres, image_url in ARTISTS:
            cur.execute(
                "insert into raw.artists (artist_id, name, genres, image_url, fetched_at) values (%s, %s, %s, %s, now())",
                (artist_id, name, genres, image_url),
            )
        for album_id, name, artist_ids, image_url in ALBUMS:
            cur.execute(
                "insert into raw.albums (album_id, name, artist_ids, image_url, fetched_at)"
                " values (%s, %s, %s, %s, now())",
                (album_id, name, artist_ids, image_url),
            )
        for track_id, name, duration_ms, album_id, artist_ids in TRACKS:
            cur.execute(
                "insert into raw.tracks (track_id, name, duration_ms, album_id, artist_ids, fetched_at)"
                " values (%s, %s, %s, %s, %s, now())",
                (track_id, name, duration_ms, album_id, artist_ids),
            )
        insert_plays(conn, PLAYS)
        for user_id, gap_from, gap_to in INGEST_GAPS:
            cur.execute(
                "insert into app.ingest_gaps (user_id, gap_from, gap_to) values (%s, %s, %s)",
                (user_id, gap_from, gap_to),
            )
    seed_export_history(conn)


def insert_plays(conn, plays) -> None:
    with conn.cursor() as cur:
        for user_id, played_at, track_id, source, ms_played in plays:
            cur.execute(
                "insert into raw.plays (user_id, played_at, track_id, source, ms_played, ingested_at)"
                " values (%s, %s, %s, %s, %s, now())",
                (user_id, played_at, track_id, source, ms_played),
            )
