"""The four Kafka streams: topic names, keys and message fields (see docs/contracts.md).

This module is the one place message shapes are defined. The producer validates
every message against it before producing; the Spark consumer derives its
schemas from the same field lists, so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping

SCHEMA_VERSION = 1

PLAYS_TOPIC = "spotify.plays"
TRACKS_TOPIC = "spotify.tracks"
ALBUMS_TOPIC = "spotify.albums"
ARTISTS_TOPIC = "spotify.artists"
TOPICS = (PLAYS_TOPIC, TRACKS_TOPIC, ALBUMS_TOPIC, ARTISTS_TOPIC)

PLAY_SOURCES = ("api", "export", "demo")

# A play is a play of 30 s or more (Spotify's own rule for recently-played). A shorter one
# from an export is produced to the plays stream all the same, as a skip event: dbt keeps
# plays and skips apart by this threshold.
MIN_PLAY_MS = 30_000

# Ids for entities an export knows only by name (no Spotify id, or no album/artist ids):
# "name:<kind>:<hash of the normalised names>", never a Spotify id. When Spotify metadata
# arrives for the real id, it replaces the name-only rows (see docs/contracts.md).
NAME_KEY_PREFIX = "name:"

# Largest message value we accept; bigger ones are dead-lettered by the consumer.
MAX_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # one of: string, long, int, boolean, string_array, timestamp_ms
    required: bool = False


@dataclass(frozen=True)
class Stream:
    topic: str
    key: str
    fields: tuple[Field, ...]

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


PLAYS = Stream(
    PLAYS_TOPIC,
    key="user_id",
    fields=(
        Field("user_id", "string", required=True),
        Field("played_at", "timestamp_ms", required=True),  # END of the play, UTC epoch ms
        Field("track_id", "string", required=True),
        Field("context_uri", "string"),
        Field("source", "string", required=True),
        Field("ms_played", "long"),
        Field("ingested_at", "timestamp_ms", required=True),
        # What the privacy export says about how the play ended (null from the API).
        Field("reason_end", "string"),
        Field("shuffle", "boolean"),
        Field("offline", "boolean"),
    ),
)

TRACKS = Stream(
    TRACKS_TOPIC,
    key="track_id",
    fields=(
        Field("track_id", "string", required=True),
        Field("name", "string", required=True),
        Field("duration_ms", "long"),
        Field("explicit", "boolean"),
        Field("popularity", "int"),
        Field("album_id", "string"),
        Field("artist_ids", "string_array"),
        Field("track_number", "int"),
        Field("fetched_at", "timestamp_ms", required=True),
    ),
)

ALBUMS = Stream(
    ALBUMS_TOPIC,
    key="album_id",
    fields=(
        Field("album_id", "string", required=True),
        Field("name", "string", required=True),
        Field("album_type", "string"),
        Field("release_date", "string"),
        Field("release_date_precision", "string"),
        Field("artist_ids", "string_array"),
        Field("image_url", "string"),
        Field("fetched_at", "timestamp_ms", required=True),
    ),
)

ARTISTS = Stream(
    ARTISTS_TOPIC,
    key="artist_id",
    fields=(
        Field("artist_id", "string", required=True),
        Field("name", "string", required=True),
        Field("genres", "string_array"),
        Field("popularity", "int"),
        Field("followers", "long"),
        Field("image_url", "string"),
        Field("fetched_at", "timestamp_ms", required=True),
    ),
)

STREAMS = {s.topic: s for s in (PLAYS, TRACKS, ALBUMS, ARTISTS)}


class InvalidMessage(ValueError):
    """A message that does not match its stream's contract."""


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind in ("long", "int", "timestamp_ms"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string_array":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    raise ValueError(f"unknown field type {kind!r}")


def validate(topic: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """Return the message as an ordered dict with `schema_version` first, or raise InvalidMessage."""
    stream = STREAMS.get(topic)
    if stream is None:
        raise InvalidMessage(f"unknown topic {topic!r}")
    unknown = set(message) - set(stream.field_names) - {"schema_version"}
    if unknown:
        raise InvalidMessage(f"{topic}: unknown fields {sorted(unknown)}")
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    for field in stream.fields:
        value = message.get(field.name)
        if value is None:
            if field.required:
                raise InvalidMessage(f"{topic}: missing required field {field.name!r}")
            out[field.name] = None
            continue
        if not _type_ok(field.type, value):
            raise InvalidMessage(f"{topic}: field {field.name!r} should be {field.type}, got {value!r}")
        out[field.name] = value
    if topic == PLAYS_TOPIC and out["source"] not in PLAY_SOURCES:
        raise InvalidMessage(f"{topic}: source must be one of {PLAY_SOURCES}, got {out['source']!r}")
    return out


def name_key(kind: str, *names: str) -> str:
    """A stable id for a `kind` ("track", "album", "artist") known only by its names.

    Names are NFC-normalised, trimmed and case-folded, so "Sigur Rós" and "sigur rós " agree.
    For a track pass (artist, track); for an album (artist, album); for an artist (artist,).
    """
    normalized = "\x1f".join(unicodedata.normalize("NFC", n).strip().casefold() for n in names)
    return f"{NAME_KEY_PREFIX}{kind}:{hashlib.sha1(normalized.encode('utf-8')).hexdigest()[:20]}"


def is_name_key(entity_id: str) -> bool:
    return entity_id.startswith(NAME_KEY_PREFIX)
