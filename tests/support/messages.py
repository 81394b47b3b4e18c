"""Valid messages of the four streams, as the producer sends them (`schema_version` first).

Overrides replace fields (or add unknown ones), so a test can make a message invalid on purpose.
"""

from __future__ import annotations

from weekly_wrapped import contracts


def play(user: str, i: int, **overrides) -> dict:
    """The `i`-th play of `user`: a second apart, 17 tracks, every third one with a playlist context."""
    message = {
        "schema_version": contracts.SCHEMA_VERSION,
        "user_id": user,
        "played_at": 1_763_000_000_000 + i * 1000,
        "track_id": f"track-{i % 17}",
        "context_uri": None if i % 3 else f"spotify:playlist:{i % 5}",
        "source": "api",
        "ms_played": None,
        "ingested_at": 1_763_100_000_000,
    }
    message.update(overrides)
    return message


def track(track_id: str, fetched_at: int, name: str = "Song", **overrides) -> dict:
    message = {
        "schema_version": contracts.SCHEMA_VERSION, "track_id": track_id, "name": name, "duration_ms": 200_000,
        "explicit": False, "popularity": None, "album_id": "album-1", "artist_ids": ["artist-1", "artist-2"],
        "track_number": 3, "fetched_at": fetched_at,
    }
    message.update(overrides)
    return message


def album(album_id: str, fetched_at: int, **overrides) -> dict:
    message = {
        "schema_version": contracts.SCHEMA_VERSION, "album_id": album_id, "name": "Album", "album_type": "album",
        "release_date": "2024", "release_date_precision": "year", "artist_ids": ["artist-1"],
        "image_url": None, "fetched_at": fetched_at,
    }
    message.update(overrides)
    return message


def artist(artist_id: str, fetched_at: int, **overrides) -> dict:
    message = {
        "schema_version": contracts.SCHEMA_VERSION, "artist_id": artist_id, "name": "Artist", "genres": [],
        "popularity": None, "followers": None, "image_url": None, "fetched_at": fetched_at,
    }
    message.update(overrides)
    return message
