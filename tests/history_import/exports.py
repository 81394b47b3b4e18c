"""Privacy exports in Spotify's real shapes, built in the tests, and an independent reading of them.

`expected(...)` is the truth the importer is checked against: plain Python over the plain
dicts written to the files (json round trip for duplicates, strptime for times), sharing no
code with `weekly_wrapped.ingest`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import unicodedata
import zipfile
from collections import Counter
from pathlib import Path

TRACK_FIELDS = ("master_metadata_track_name", "master_metadata_album_artist_name",
                "master_metadata_album_album_name", "spotify_track_uri")


def extended(ts: str, ms: int, track: str | None = "Song", artist: str | None = "Artist", album: str | None = "Album",
             uri: str | None = "spotify:track:4uLU6hMCjMI75M1A2tKUQC", **overrides) -> dict:
    """One Streaming_History_Audio row, every field Spotify writes (2024 format)."""
    row = {
        "ts": ts, "platform": "android", "ms_played": ms, "conn_country": "DE", "ip_addr": "10.0.0.1",
        "master_metadata_track_name": track, "master_metadata_album_artist_name": artist,
        "master_metadata_album_album_name": album, "spotify_track_uri": uri,
        "episode_name": None, "episode_show_name": None, "spotify_episode_uri": None,
        "audiobook_title": None, "audiobook_uri": None, "audiobook_chapter_uri": None, "audiobook_chapter_title": None,
        "reason_start": "trackdone", "reason_end": "trackdone", "shuffle": False, "skipped": False,
        "offline": False, "offline_timestamp": None, "incognito_mode": False,
    }
    row.update(overrides)
    return row


def podcast(ts: str, ms: int = 600_000) -> dict:
    return extended(ts, ms, None, None, None, None, episode_name="Folge 12: \"Daten\"",
                    episode_show_name="Der Podcast", spotify_episode_uri="spotify:episode:0Q86acNRm6V9GYx55SXKwf")


def audiobook(ts: str, ms: int = 900_000) -> dict:
    return extended(ts, ms, None, None, None, None, audiobook_title="Book", audiobook_uri="spotify:show:x",
                    audiobook_chapter_uri="spotify:episode:y", audiobook_chapter_title="Chapter 1")


def nothing(ts: str, ms: int = 1_000) -> dict:
    """A row with every track field null (it happens: Spotify lost what was playing)."""
    return extended(ts, ms, None, None, None, None)


def endsong(ts: str, ms: int, **kw) -> dict:
    """The older endsong_*.json shape: username, user_agent_decrypted, no audiobook fields."""
    row = extended(ts, ms, **kw)
    for k in ("audiobook_title", "audiobook_uri", "audiobook_chapter_uri", "audiobook_chapter_title"):
        row.pop(k)
    return {"username": "ana", **row, "user_agent_decrypted": "unknown", "ip_addr_decrypted": "10.0.0.1"}


def account(end: str, ms: int, artist: str | None = "Artist", track: str | None = "Song") -> dict:
    return {"endTime": end, "artistName": artist, "trackName": track, "msPlayed": ms}


def account_podcast(end: str, ms: int = 400_000) -> dict:
    return {"endTime": end, "podcastName": "Der Podcast", "episodeName": "Folge 3", "msPlayed": ms}


def dumps(rows: list) -> bytes:
    """As Spotify writes them: an indented array, non-ASCII as is."""
    return json.dumps(rows, indent=2, ensure_ascii=False).encode("utf-8")


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


# --- the independent reading --------------------------------------------------------------------

def nk(kind: str, *names: str) -> str:
    """contracts.name_key, restated from docs/contracts.md (NFC, trim, casefold, sha1, 20 hex)."""
    joined = "\x1f".join(unicodedata.normalize("NFC", n).strip().casefold() for n in names)
    return f"name:{kind}:{hashlib.sha1(joined.encode()).hexdigest()[:20]}"


def epoch_ms(ts: str) -> int:
    return int(dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()) * 1000


def account_ms(end: str) -> int:
    return int(dt.datetime.strptime(end, "%Y-%m-%d %H:%M").replace(tzinfo=dt.timezone.utc).timestamp()) * 1000


def expected(files: list[tuple[str, list[dict]]]) -> dict:
    """What an import of these (kind, rows) files must produce: plays as tuples, skip reasons, entities."""
    seen = set()
    plays = Counter()  # (played_at, track_id, ms_played, reason_end, shuffle, offline)
    skipped = Counter()
    tracks, albums, artists, names, real_ids = {}, {}, {}, {}, set()
    for kind, rows in files:
        for row in rows:
            if kind in ("podcast", "video", "audiobook"):
                skipped[kind] += 1
                continue
            key = json.dumps(row, sort_keys=True)
            if key in seen:
                skipped["duplicate"] += 1
                continue
            seen.add(key)
            if kind == "account":
                if row.get("podcastName") or row.get("episodeName"):
                    skipped["podcast"] += 1
                    continue
                tid = nk("track", row["artistName"], row["trackName"])
                names[tid] = (row["artistName"], row["trackName"])
                artists.setdefault(nk("artist", row["artistName"]), row["artistName"])
                tracks.setdefault(tid, (row["trackName"], None, [nk("artist", row["artistName"])]))
                plays[(account_ms(row["endTime"]), tid, row["msPlayed"], None, None, None)] += 1
                continue
            if row["spotify_track_uri"] is None:
                if row.get("episode_name") is not None:
                    skipped["podcast"] += 1
                elif row.get("audiobook_title") is not None:
                    skipped["audiobook"] += 1
                else:
                    skipped["no_track"] += 1
                continue
            tid = row["spotify_track_uri"].split(":")[2]
            real_ids.add(tid)
            artist, album = row["master_metadata_album_artist_name"], row["master_metadata_album_album_name"]
            artists.setdefault(nk("artist", artist), artist)
            albums.setdefault(nk("album", artist, album), album)
            tracks.setdefault(tid, (row["master_metadata_track_name"], nk("album", artist, album), [nk("artist", artist)]))
            plays[(epoch_ms(row["ts"]), tid, row["ms_played"], row["reason_end"], row["shuffle"], row["offline"])] += 1
    return {"plays": plays, "skipped": skipped, "tracks": tracks, "albums": albums, "artists": artists,
            "names": names, "real_ids": real_ids}
