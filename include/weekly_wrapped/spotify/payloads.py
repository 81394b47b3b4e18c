"""Spotify JSON -> stream messages, and the cursor/gap arithmetic. Pure functions, no I/O.

Every message leaves here validated against `weekly_wrapped.contracts`, so a
shape change at Spotify fails loudly at the edge instead of deep in Spark.
Spotify's 2026 development-mode shapes omit `popularity`, `followers` and `genres`;
those become null, never errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, urlparse

from weekly_wrapped import contracts

# Spotify keeps only the last 50 plays reachable; a poll can never see further back.
HISTORY_WINDOW = 50

# What the marts need of each entity; anything missing is fetched one id at a time.
NEEDED_FIELDS = {
    contracts.TRACKS_TOPIC: ("name", "duration_ms", "album_id", "artist_ids"),
    contracts.ALBUMS_TOPIC: ("name", "album_type", "release_date", "artist_ids"),
    # Simplified artists (inside tracks) carry no image; the recap shows artist pictures.
    contracts.ARTISTS_TOPIC: ("name", "image_url"),
}


def parse_played_at(value: str) -> int:
    """Spotify's ISO 8601 UTC timestamp ('2026-11-23T18:04:12.345Z', ms optional) -> epoch ms."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    # Integer arithmetic: float timestamps can be off by one millisecond.
    delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _image_url(obj: Mapping[str, Any]) -> str | None:
    # Spotify lists images widest first.
    images = obj.get("images") or []
    return images[0].get("url") if images else None


def _ids(objs: Iterable[Mapping[str, Any]] | None) -> list[str] | None:
    if objs is None:
        return None
    return [o["id"] for o in objs if o.get("id")]


def play_message(user_id: str, item: Mapping[str, Any], source: str, ingested_at_ms: int) -> dict:
    """One `spotify.plays` message from a recently-played item (`track`, `played_at`, `context`)."""
    context = item.get("context") or {}
    return contracts.validate(contracts.PLAYS_TOPIC, {
        "user_id": user_id,
        "played_at": parse_played_at(item["played_at"]),
        "track_id": item["track"]["id"],
        "context_uri": context.get("uri"),
        "source": source,
        "ms_played": None,  # the API does not say how long was listened
        "ingested_at": ingested_at_ms,
    })


def track_message(track: Mapping[str, Any], fetched_at_ms: int) -> dict:
    album = track.get("album") or {}
    return contracts.validate(contracts.TRACKS_TOPIC, {
        "track_id": track["id"],
        "name": track["name"],
        "duration_ms": track.get("duration_ms"),
        "explicit": track.get("explicit"),
        "popularity": track.get("popularity"),
        "album_id": album.get("id"),
        "artist_ids": _ids(track.get("artists")),
        "track_number": track.get("track_number"),
        "fetched_at": fetched_at_ms,
    })


def album_message(album: Mapping[str, Any], fetched_at_ms: int) -> dict:
    return contracts.validate(contracts.ALBUMS_TOPIC, {
        "album_id": album["id"],
        "name": album["name"],
        "album_type": album.get("album_type"),
        "release_date": album.get("release_date"),
        "release_date_precision": album.get("release_date_precision"),
        "artist_ids": _ids(album.get("artists")),
        "image_url": _image_url(album),
        "fetched_at": fetched_at_ms,
    })


def artist_message(artist: Mapping[str, Any], fetched_at_ms: int) -> dict:
    """From a full or a simplified artist object; absent fields are null."""
    followers = artist.get("followers")
    return contracts.validate(contracts.ARTISTS_TOPIC, {
        "artist_id": artist["id"],
        "name": artist["name"],
        "genres": artist.get("genres"),
        "popularity": artist.get("popularity"),
        "followers": followers.get("total") if isinstance(followers, Mapping) else None,
        "image_url": _image_url(artist),
        "fetched_at": fetched_at_ms,
    })


def missing_fields(topic: str, message: Mapping[str, Any]) -> list[str]:
    """The fields the marts need that this message lacks (empty: no look-up needed)."""
    return [f for f in NEEDED_FIELDS[topic] if message.get(f) in (None, [], "")]


@dataclass
class PollMessages:
    """The four streams' messages from one user's poll, de-duplicated by key, plays oldest first."""

    plays: list[dict] = field(default_factory=list)
    tracks: dict[str, dict] = field(default_factory=dict)
    albums: dict[str, dict] = field(default_factory=dict)
    artists: dict[str, dict] = field(default_factory=dict)

    def entities(self, topic: str) -> dict[str, dict]:
        return {contracts.TRACKS_TOPIC: self.tracks, contracts.ALBUMS_TOPIC: self.albums,
                contracts.ARTISTS_TOPIC: self.artists}[topic]


def messages_from_items(user_id: str, items: Iterable[Mapping[str, Any]], *, after_ms: int | None,
                        source: str, now_ms: int) -> PollMessages:
    """Plays newer than `after_ms` and the tracks/albums/artists inside them.

    Items at or before the cursor are dropped (they were acknowledged before), as are
    repeats of a natural key across pages. Album artists and track artists both count.
    """
    out = PollMessages()
    seen: set[tuple[int, str]] = set()
    for item in items:
        track = item.get("track")
        if not track or not track.get("id") or track.get("is_local"):
            continue  # local files have no Spotify id: nothing to join on
        play = play_message(user_id, item, source, now_ms)
        key = (play["played_at"], play["track_id"])
        if (after_ms is not None and play["played_at"] <= after_ms) or key in seen:
            continue
        seen.add(key)
        out.plays.append(play)
        add_track_entities(out, track, now_ms)
    out.plays.sort(key=lambda p: p["played_at"])
    return out


def add_track_entities(out: PollMessages, track: Mapping[str, Any], now_ms: int) -> None:
    """Add a track object's track, album and artist messages (first one of each id wins).

    For a recently-played item's track and for a `GET /tracks/{id}` answer alike (the
    metadata backfill): album artists and track artists both count.
    """
    out.tracks.setdefault(track["id"], track_message(track, now_ms))
    album = track.get("album")
    if album and album.get("id"):
        out.albums.setdefault(album["id"], album_message(album, now_ms))
    for artist in list(track.get("artists") or []) + list((album or {}).get("artists") or []):
        if artist.get("id"):
            out.artists.setdefault(artist["id"], artist_message(artist, now_ms))


def newest_played_at(plays: Iterable[Mapping[str, Any]], default: int | None = None) -> int | None:
    """The new cursor: the newest `played_at` among the plays (or `default` if there are none)."""
    return max((p["played_at"] for p in plays), default=default)


def detect_gap(after_ms: int | None, plays: list[Mapping[str, Any]],
               window: int = HISTORY_WINDOW) -> tuple[int, int] | None:
    """(from, to) in epoch ms when plays between the cursor and the oldest new play may be lost.

    Spotify serves only the last `window` plays; if a poll after a known cursor yields a
    full window of newer plays, whatever was played between the cursor and the oldest of
    them is out of reach. Without a cursor (a new user) nothing was promised: no gap.
    """
    if after_ms is None:
        return None
    newer = [p["played_at"] for p in plays if p["played_at"] > after_ms]
    if len(newer) < window:
        return None
    return after_ms, min(newer)


def cursor_from_url(url: str | None, name: str = "after") -> int | None:
    """The `after`/`before` cursor (epoch ms) in a `next` URL, or None."""
    if not url:
        return None
    values = parse_qs(urlparse(url).query).get(name)
    return int(values[0]) if values else None


def retry_after_seconds(headers: Mapping[str, str] | None, default: int = 1) -> int:
    """Spotify's `Retry-After` (seconds) from response headers, case-insensitively."""
    for k, v in (headers or {}).items():
        if k.lower() == "retry-after":
            try:
                return max(0, int(float(v)))
            except ValueError:
                return default
    return default
