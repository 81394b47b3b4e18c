"""Backfill from a Spotify privacy export ("Extended streaming history").

The export is a set of JSON files (`Streaming_History_Audio_*.json`), each an array
of play records. We read them strictly: a file that is not what we expect is
refused with the file and line that broke it, before anything is produced.
Plays become `spotify.plays` messages with `source = "export"`; `ts` is the END
of the play, as for the API. The same play appearing in two files (it happens)
is the same natural key, so it lands once.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from weekly_wrapped import contracts

# Spotify only reports plays longer than 30 s as recently played; the export has
# every play, skips included. Keep the two sources comparable.
MIN_MS_PLAYED = 30_000
TRACK_URI_PREFIX = "spotify:track:"


class ExportError(ValueError):
    """The export file is broken or is not an extended streaming history."""


@dataclass(frozen=True)
class ExportRecord:
    line: int
    ts_ms: int
    ms_played: int
    track_id: str | None
    track_name: str | None


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _iter_array(text: str, source: str) -> Iterator[tuple[int, Any]]:
    """Yield (line, item) for each element of a top-level JSON array, with line numbers."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text.startswith("[", pos):
        raise ExportError(f"{source}:{_line_of(text, pos)}: expected a JSON array of plays")
    pos += 1
    expect_item = True
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            raise ExportError(f"{source}:{_line_of(text, pos)}: the file ends inside the array (truncated?)")
        if text[pos] == "]":
            return
        if not expect_item:
            if text[pos] != ",":
                raise ExportError(f"{source}:{_line_of(text, pos)}: expected ',' or ']' between plays")
            pos += 1
            expect_item = True
            continue
        try:
            item, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise ExportError(f"{source}:{e.lineno}: not valid JSON: {e.msg}") from None
        yield _line_of(text, pos), item
        pos, expect_item = end, False


def _parse_ts(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError("'ts' must be a string like 2024-05-01T12:34:56Z")
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("'ts' has no time zone")
    return int(parsed.timestamp() * 1000)


def parse_export(text: str, source: str = "export") -> list[ExportRecord]:
    """Every record of one export file, or ExportError naming the line that broke it."""
    records = []
    for line, item in _iter_array(text, source):
        if not isinstance(item, dict):
            raise ExportError(f"{source}:{line}: a play must be a JSON object")
        if "ts" not in item or "ms_played" not in item:
            if "endTime" in item:
                raise ExportError(f"{source}:{line}: this is the short 'Account data' history, which has no "
                                  "track ids; request the 'Extended streaming history' instead")
            raise ExportError(f"{source}:{line}: missing 'ts' or 'ms_played'")
        try:
            ts_ms = _parse_ts(item["ts"])
        except ValueError as e:
            raise ExportError(f"{source}:{line}: bad 'ts' {item['ts']!r}: {e}") from None
        ms_played = item["ms_played"]
        if not isinstance(ms_played, int) or isinstance(ms_played, bool) or ms_played < 0:
            raise ExportError(f"{source}:{line}: 'ms_played' must be a non-negative integer, got {ms_played!r}")
        uri = item.get("spotify_track_uri")
        if uri is not None and (not isinstance(uri, str) or not uri.startswith(TRACK_URI_PREFIX)):
            raise ExportError(f"{source}:{line}: 'spotify_track_uri' must look like spotify:track:<id>, got {uri!r}")
        records.append(ExportRecord(
            line=line, ts_ms=ts_ms, ms_played=ms_played,
            track_id=uri[len(TRACK_URI_PREFIX):] if uri else None,
            track_name=item.get("master_metadata_track_name"),
        ))
    return records


def export_files(path: Path) -> list[Path]:
    """One file, or every Streaming_History_Audio_*.json in a folder, in name order."""
    if path.is_dir():
        files = sorted(path.glob("Streaming_History_Audio_*.json"))
        if not files:
            raise ExportError(f"{path}: no Streaming_History_Audio_*.json files in this folder")
        return files
    if not path.exists():
        raise ExportError(f"{path}: no such file")
    return [path]


def read_export(path: Path) -> list[ExportRecord]:
    """All records of every file, each file validated whole before any is used."""
    records: list[ExportRecord] = []
    for file in export_files(path):
        records.extend(parse_export(file.read_text(encoding="utf-8"), source=str(file)))
    return records


def to_messages(
    records: Iterable[ExportRecord], user_id: str, ingested_at_ms: int
) -> tuple[list[dict], list[dict]]:
    """(plays, tracks) messages for the music plays worth counting; podcasts and skips are left out.

    Export tracks carry only a name: `fetched_at` is the play's own time, so metadata
    fetched from the API (newer) always wins in `raw.tracks`.
    """
    plays: dict[tuple, dict] = {}
    tracks: dict[str, dict] = {}
    for r in records:
        if r.track_id is None or r.ms_played < MIN_MS_PLAYED:
            continue
        play = contracts.validate(contracts.PLAYS_TOPIC, {
            "user_id": user_id, "played_at": r.ts_ms, "track_id": r.track_id, "context_uri": None,
            "source": "export", "ms_played": r.ms_played, "ingested_at": ingested_at_ms,
        })
        plays[(user_id, r.ts_ms, r.track_id)] = play
        if r.track_name and (r.track_id not in tracks or tracks[r.track_id]["fetched_at"] < r.ts_ms):
            tracks[r.track_id] = contracts.validate(contracts.TRACKS_TOPIC, {
                "track_id": r.track_id, "name": r.track_name, "fetched_at": r.ts_ms,
            })
    return list(plays.values()), list(tracks.values())


def import_export(path: Path, user_id: str, dsn: str, kafka_config: dict, progress_every: int = 10_000,
                  topics: dict[str, str] | None = None) -> dict:
    """Validate the whole export, then produce its plays and track names to Kafka.

    Nothing is produced from a broken export. Re-importing the same export is safe:
    every play keeps its natural key, so the consumer upserts it onto itself.
    After Kafka acknowledged, the tracks ingestion has not produced yet are queued in
    `app.metadata_backlog`: the export names them but has no album or artists, which
    `metadata_backfill` fetches later. `topics` maps contract topics to real ones (tests).
    """
    import logging
    import time

    from weekly_wrapped.ingest import metadata_backfill
    from weekly_wrapped.ingest.producer import StreamProducer
    from weekly_wrapped.users.accounts import get_user

    log = logging.getLogger(__name__)
    if get_user(dsn, user_id) is None:
        raise ExportError(f"user {user_id!r} is not onboarded: connect them first, so their time zone is known")
    records = read_export(Path(path))
    plays, tracks = to_messages(records, user_id, ingested_at_ms=int(time.time() * 1000))
    log.info("export %s: %d records, %d plays to import (%d skips/podcasts left out), %d tracks",
             path, len(records), len(plays), len(records) - len(plays), len(tracks))
    producer = StreamProducer(kafka_config, topics)
    producer.send_all(((contracts.TRACKS_TOPIC, t) for t in tracks), validated=True)
    for i, play in enumerate(plays, 1):
        producer.send(contracts.PLAYS_TOPIC, play, validated=True)
        if i % progress_every == 0:
            log.info("produced %d/%d plays", i, len(plays))
    report = producer.flush()
    # Only after the flush: a failed import queues nothing (its retry will).
    queued = metadata_backfill.queue_tracks(dsn, user_id, metadata_backfill.tracks_to_queue(plays))
    log.info("%d tracks queued for the metadata backfill", queued)
    first = min((p["played_at"] for p in plays), default=None)
    last = max((p["played_at"] for p in plays), default=None)
    return {"user_id": user_id, "records": len(records), "plays": len(plays), "tracks": len(tracks),
            "delivered": report.delivered, "metadata_queued": queued, "first_played_at_ms": first, "last_played_at_ms": last}
