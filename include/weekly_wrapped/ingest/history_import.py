"""Backfill from a Spotify privacy export: every format, streamed, validated whole first.

`import_export(path, user_id, dsn, kafka_config)` takes the zip Spotify sends, the folder it
unpacks to, or single files (`export_files` finds and reads them, classified by content), in
two passes over the files, one file in memory at a time:

1. validate: every history file is decoded strictly; anything wrong is an ExportError naming the
   file (and the zip member) and the line and column, and nothing has been produced;
2. produce: each file again, row by row (`RowMessages`, pure), straight to the producer:
   - a music row of 30 s or more is a play, a shorter one a skip event (`contracts.MIN_PLAY_MS`),
     both to `spotify.plays` with `source = "export"`, `reason_end`, `shuffle`, `offline`;
   - podcast, audiobook and video rows, rows with no track at all (`no_track`) and exact
     duplicates of an earlier row of the same import (`duplicate`) are skipped and counted;
   - the names an export carries become entities at once, each once per import, `fetched_at` 0
     so that any fetched metadata replaces them: an extended row's track (its real id) points at
     `name:album:…` / `name:artist:…` entities produced beside it; an account-data row (names
     only) plays under `track_id = name:track:…` with a name-only track and artist.
3. after Kafka acknowledged every message: real track ids are queued in `app.metadata_backlog`
   (`metadata_backfill.queue_tracks`), account-data name pairs in `app.track_resolutions`
   (resolved through Spotify's search by its own job). A failed produce queues nothing.

Re-importing, or importing plays also polled from the API, adds nothing twice: plays keep their
natural key (user, end time, track). The returned report (the DAG's XCom) counts files, rows,
plays, skip events, skipped rows by reason, the time range and what was queued; rows always equal
plays + skip events + skipped.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from weekly_wrapped import contracts
from weekly_wrapped.ingest.export_files import (
    HISTORY_KINDS, SKIPPED_KINDS, AccountRow, ExportError, ExportFile, ExtendedRow, check_bytes, classify,
    decode_rows, list_files, row_error,
)

__all__ = ["ExportError", "ImportReport", "RowMessages", "import_export", "validate_export"]

log = logging.getLogger(__name__)

TRACK_URI_PREFIX = "spotify:track:"
_URI_PREFIX_LEN = len(TRACK_URI_PREFIX)
PLAYS_TOPIC, SCHEMA_VERSION, MIN_PLAY_MS = contracts.PLAYS_TOPIC, contracts.SCHEMA_VERSION, contracts.MIN_PLAY_MS
SKIP_REASONS = ("podcast", "audiobook", "video", "no_track", "duplicate")
PROGRESS_EVERY = 50_000
QUEUE_CHUNK = 10_000

@dataclass
class ImportReport:
    """What one import read and did; `as_dict()` is the task's XCom."""

    user_id: str
    path: str
    files_read: int = 0      # history files whose rows were read (music, and podcast/video/audiobook)
    files_ignored: int = 0   # other files of the export (Userdata.json, playlists, the pdf, ...)
    rows: int = 0
    plays: int = 0           # >= 30 s
    skip_events: int = 0     # < 30 s, produced as skip events
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    first_played_at_ms: int | None = None
    last_played_at_ms: int | None = None
    tracks: int = 0          # entity messages produced, each entity once
    albums: int = 0
    artists: int = 0
    delivered: int = 0
    metadata_queued: int = 0     # real track ids newly queued in app.metadata_backlog
    resolutions_queued: int = 0  # name pairs newly queued in app.track_resolutions
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        def iso(ms):
            return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat()
        return {
            "user_id": self.user_id, "path": self.path,
            "files": {"read": self.files_read, "ignored": self.files_ignored},
            "rows": self.rows, "records": self.rows, "plays": self.plays, "skip_events": self.skip_events,
            "skipped": dict(self.skipped),
            "first_played_at": iso(self.first_played_at_ms), "last_played_at": iso(self.last_played_at_ms),
            "first_played_at_ms": self.first_played_at_ms, "last_played_at_ms": self.last_played_at_ms,
            "tracks": self.tracks, "albums": self.albums, "artists": self.artists, "delivered": self.delivered,
            "metadata_queued": self.metadata_queued, "resolutions_queued": self.resolutions_queued,
            "seconds": round(self.seconds, 1),
        }

    def summary(self) -> str:
        skipped = ", ".join(f"{k} {v}" for k, v in self.skipped.items())
        d = self.as_dict()
        return (f"export {self.path} for {self.user_id}: {self.files_read} files read, {self.files_ignored} ignored; "
                f"{self.rows} rows: {self.plays} plays, {self.skip_events} skip events (< 30 s), skipped: {skipped}; "
                f"from {d['first_played_at']} to {d['last_played_at']}; entities: {self.tracks} tracks, "
                f"{self.albums} albums, {self.artists} artists; queued: {self.metadata_queued} tracks for "
                f"metadata, {self.resolutions_queued} names for resolution; {self.seconds:.1f} s")


def _ms(ts: dt.datetime) -> int:
    """Epoch ms of an aware datetime (exact for the export's whole seconds and for milliseconds)."""
    return round(ts.timestamp() * 1000)


def account_end_ms(end_time: str) -> int:
    """`endTime` of account data ("YYYY-MM-DD HH:MM", UTC) as epoch ms; ValueError otherwise."""
    if len(end_time) != 16 or end_time[10] != " " or end_time[13] != ":":
        raise ValueError("expected 'YYYY-MM-DD HH:MM'")
    return _ms(dt.datetime.fromisoformat(end_time).replace(tzinfo=dt.timezone.utc))


class RowMessages:
    """Pure: rows of one import in, messages out, and the report's counts. One per import.

    `extended(row)` / `account(row)` return the messages of a row ([(topic, message), ...],
    entities before the play) or [] for a skipped row (counted in `report.skipped`). Messages
    are built in the contract's field order, equal to what `contracts.validate` returns (the
    rows were type-checked when decoded). Entities are produced once per import; the sets of
    seen ids grow with distinct tracks, not with rows.
    """

    def __init__(self, user_id: str, ingested_at_ms: int, report: ImportReport) -> None:
        self.user_id = user_id
        self.ingested_at_ms = ingested_at_ms
        self.report = report
        self._seen_rows: set[int] = set()   # hashes of rows seen (exact duplicates)
        self._entities: set[str] = set()    # entity ids produced
        self.track_ids: set[str] = set()    # real track ids of plays/skips: for app.metadata_backlog
        self.names: dict[str, tuple[str, str]] = {}  # name_key -> (artist, track): app.track_resolutions
        self._first, self._last = float("inf"), float("-inf")

    def _duplicate(self, row) -> bool:
        h = hash(row)  # over every field: exact duplicates only
        seen = self._seen_rows
        if h in seen:
            self.report.skipped["duplicate"] += 1
            return True
        seen.add(h)
        return False

    def _play(self, played_at: int, track_id: str, ms_played: int, reason_end, shuffle, offline) -> tuple:
        r = self.report
        if ms_played >= MIN_PLAY_MS:
            r.plays += 1
        else:
            r.skip_events += 1
        if played_at < self._first:
            self._first = r.first_played_at_ms = played_at
        if played_at > self._last:
            self._last = r.last_played_at_ms = played_at
        return (PLAYS_TOPIC, {
            "schema_version": SCHEMA_VERSION, "user_id": self.user_id, "played_at": played_at,
            "track_id": track_id, "context_uri": None, "source": "export", "ms_played": ms_played,
            "ingested_at": self.ingested_at_ms, "reason_end": reason_end, "shuffle": shuffle, "offline": offline,
        })

    def _artist(self, out: list, name: str) -> str:
        artist_id = contracts.name_key("artist", name)
        if artist_id not in self._entities:
            self._entities.add(artist_id)
            self.report.artists += 1
            out.append((contracts.ARTISTS_TOPIC, {
                "schema_version": contracts.SCHEMA_VERSION, "artist_id": artist_id, "name": name, "genres": None,
                "popularity": None, "followers": None, "image_url": None, "fetched_at": 0}))
        return artist_id

    def _track(self, out: list, track_id: str, name: str, album_id: str | None, artist_ids: list[str] | None):
        self._entities.add(track_id)
        self.report.tracks += 1
        out.append((contracts.TRACKS_TOPIC, {
            "schema_version": contracts.SCHEMA_VERSION, "track_id": track_id, "name": name, "duration_ms": None,
            "explicit": None, "popularity": None, "album_id": album_id, "artist_ids": artist_ids,
            "track_number": None, "fetched_at": 0}))

    def extended(self, row: ExtendedRow, file_kind: str = "extended") -> list[tuple]:
        self.report.rows += 1
        h = hash(row)  # over every field: exact duplicates only (inlined _duplicate: the hot path)
        if h in self._seen_rows:
            self.report.skipped["duplicate"] += 1
            return []
        self._seen_rows.add(h)
        uri = row.spotify_track_uri
        if uri is None:
            if file_kind in SKIPPED_KINDS:
                reason = file_kind
            elif row.episode_name is not None or row.spotify_episode_uri is not None or row.episode_show_name is not None:
                reason = "podcast"
            elif row.audiobook_title is not None or row.audiobook_uri is not None or row.audiobook_chapter_uri is not None:
                reason = "audiobook"
            else:
                reason = "no_track"  # every track field null (or a local file, which has no Spotify id)
            self.report.skipped[reason] += 1
            return []
        track_id = uri[_URI_PREFIX_LEN:]
        out: list[tuple] = []
        if track_id not in self._entities and row.master_metadata_track_name:
            artist_name = row.master_metadata_album_artist_name
            album_name = row.master_metadata_album_album_name
            artist_id = self._artist(out, artist_name) if artist_name else None
            album_id = None
            if artist_name and album_name:
                album_id = contracts.name_key("album", artist_name, album_name)
                if album_id not in self._entities:
                    self._entities.add(album_id)
                    self.report.albums += 1
                    out.append((contracts.ALBUMS_TOPIC, {
                        "schema_version": contracts.SCHEMA_VERSION, "album_id": album_id, "name": album_name,
                        "album_type": None, "release_date": None, "release_date_precision": None,
                        "artist_ids": [artist_id], "image_url": None, "fetched_at": 0}))
            self._track(out, track_id, row.master_metadata_track_name, album_id, [artist_id] if artist_id else None)
        self.track_ids.add(track_id)
        out.append(self._play(round(row.ts.timestamp() * 1000), track_id, row.ms_played, row.reason_end,
                              row.shuffle, row.offline))
        return out

    def account(self, row: AccountRow, file_kind: str = "account") -> list[tuple]:
        self.report.rows += 1
        if self._duplicate(row):
            return []
        if file_kind in SKIPPED_KINDS or row.podcastName is not None or row.episodeName is not None:
            self.report.skipped[file_kind if file_kind in SKIPPED_KINDS else "podcast"] += 1
            return []
        if not row.artistName or not row.trackName:
            self.report.skipped["no_track"] += 1
            return []
        track_id = contracts.name_key("track", row.artistName, row.trackName)
        out: list[tuple] = []
        if track_id not in self._entities:
            self._track(out, track_id, row.trackName, None, [self._artist(out, row.artistName)])
            self.names[track_id] = (row.artistName, row.trackName)
        out.append(self._play(account_end_ms(row.endTime), track_id, row.msPlayed, None, None, None))
        return out

    def skipped_file(self, kind: str, rows: int) -> None:
        """A podcast/video/audiobook file: every row skipped under its reason."""
        self.report.rows += rows
        self.report.skipped[kind] += rows


def _check_rows(file: ExportFile, data: bytes, kind: str, rows: list) -> None:
    """What the types cannot say: track URIs and account-data end times."""
    if kind == "extended":
        for i, row in enumerate(rows):
            uri = row.spotify_track_uri
            if uri is not None and (not uri.startswith(TRACK_URI_PREFIX) or len(uri) == len(TRACK_URI_PREFIX)):
                raise row_error(file, data, i, f"spotify_track_uri must look like spotify:track:<id>, got {uri!r}")
    elif kind == "account":
        for i, row in enumerate(rows):
            try:
                account_end_ms(row.endTime)
            except ValueError as e:
                raise row_error(file, data, i, f"endTime {row.endTime!r}: {e}") from None


def read_file(file: ExportFile, checked: bool = False, data: bytes | None = None) -> tuple[str, bytes | None, list | None]:
    """(kind, data, rows) of one file, validated; (`ignored`, None, None) for a file we do not read.

    `checked=True` (the produce pass, on files the validation pass accepted) leaves out the checks
    the typed decoding does not repeat by itself (encoding, URIs, end times). `data`: the file's
    bytes if already read.
    """
    if data is None:
        data = file.read()
    kind = classify(file, data)
    if kind == "ignored":
        return kind, None, None
    if not checked:
        check_bytes(file, data)
    rows = decode_rows(file, data, kind)
    if checked:
        return kind, data, rows
    if kind in HISTORY_KINDS:
        _check_rows(file, data, kind, rows)
    elif any(not isinstance(r, dict) for r in rows):
        raise ExportError(f"{file.label}: expected an array of objects")
    return kind, data, rows


def _read_ahead(files: list[ExportFile]) -> Iterator[tuple[ExportFile, bytes]]:
    """(file, bytes) in order, the next file read (unzipped) in a thread while this one is worked on:
    zlib and file reads release the GIL. At most two files' bytes are held at once."""
    from concurrent.futures import ThreadPoolExecutor

    if not files:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-read") as pool:
        pending = pool.submit(files[0].read)
        for i, file in enumerate(files):
            data = pending.result()
            if i + 1 < len(files):
                pending = pool.submit(files[i + 1].read)
            yield file, data
            del data


def validate_export(path: Path, on_file: Callable[[ExportFile, str, int], None] | None = None) -> list[ExportFile]:
    """Pass 1: every file read and checked (one at a time); ExportError at the first problem."""
    files = list_files(Path(path))
    history = 0
    for file, data in _read_ahead(files):
        kind, _, rows = read_file(file, data=data)
        del data
        if kind != "ignored":
            history += 1
        if on_file:
            on_file(file, kind, len(rows or ()))
    if not history:
        raise ExportError(f"{path}: no streaming history in it (expected Streaming_History_Audio_*.json, "
                          "endsong_*.json or StreamingHistory*.json)")
    return files


def iter_messages(files: list[ExportFile], rows_out: RowMessages,
                  on_file: Callable[[ExportFile, str], None] | None = None) -> Iterator[tuple[str, dict]]:
    """Pass 2: the messages of every file, one file in memory at a time."""
    report = rows_out.report
    for file, data in _read_ahead(files):
        kind, _, rows = read_file(file, checked=True, data=data)
        del data
        if kind == "ignored":
            report.files_ignored += 1
            continue
        report.files_read += 1
        if on_file:
            on_file(file, kind)
        if kind in SKIPPED_KINDS:
            rows_out.skipped_file(kind, len(rows))
            continue
        build = rows_out.extended if kind == "extended" else rows_out.account
        for row in rows:
            yield from build(row)
        del rows


def _queue_resolutions(dsn: str, user_id: str, names: dict[str, tuple[str, str]]) -> int:
    from weekly_wrapped import db

    queued = 0
    items = sorted(names.items())
    for start in range(0, len(items), QUEUE_CHUNK):
        chunk = items[start:start + QUEUE_CHUNK]
        with db.transaction(dsn) as cur:
            # on conflict do nothing: a re-import never resets a resolved (or given-up) name.
            cur.execute(
                "insert into app.track_resolutions (name_key, artist_name, track_name, user_id) "
                "select k, a, t, %s from unnest(%s::text[], %s::text[], %s::text[]) as u(k, a, t) "
                "on conflict (name_key) do nothing",
                (user_id, [k for k, _ in chunk], [a for _, (a, _) in chunk], [t for _, (_, t) in chunk]))
            queued += cur.rowcount
    return queued


def import_export(path: Path, user_id: str, dsn: str, kafka_config: dict, progress_every: int = PROGRESS_EVERY,
                  topics: dict[str, str] | None = None) -> dict:
    """Validate the whole export, produce it, then queue its tracks; returns the report (a dict).

    ExportError (a broken or foreign export, or a user not onboarded) is raised before anything
    is produced; it never gets better by retrying. `topics` maps contract topics to real ones (tests).
    """
    from weekly_wrapped.ingest import metadata_backfill
    from weekly_wrapped.ingest.producer import StreamProducer
    from weekly_wrapped.users.accounts import get_user

    started = time.monotonic()
    if get_user(dsn, user_id) is None:
        raise ExportError(f"user {user_id!r} is not onboarded: connect them first, so their time zone is known")
    files = validate_export(Path(path), on_file=lambda f, kind, n: log.info("checked %s: %s, %d rows", f.label, kind, n))
    log.info("export %s: %d files valid; producing", path, len(files))

    report = ImportReport(user_id=user_id, path=str(path))
    rows_out = RowMessages(user_id, int(time.time() * 1000), report)
    # Messages go out as they are built: the producer's local queue (librdkafka's, at most 100k
    # messages) is the only buffer, so memory does not grow with the export.
    producer = StreamProducer(kafka_config, topics)
    send = producer.send
    next_progress = progress_every
    for topic, message in iter_messages(files, rows_out, on_file=lambda f, kind: log.info("reading %s (%s)", f.label, kind)):
        send(topic, message, True)
        if report.rows >= next_progress:
            next_progress += progress_every
            log.info("%d rows: %d plays, %d skip events, %d skipped so far", report.rows, report.plays,
                     report.skip_events, sum(report.skipped.values()))
    report.delivered = producer.flush().delivered
    # Only after Kafka acknowledged: a failed import queues nothing (its retry will).
    track_ids = sorted(rows_out.track_ids)
    for start in range(0, len(track_ids), QUEUE_CHUNK):
        report.metadata_queued += metadata_backfill.queue_tracks(dsn, user_id, track_ids[start:start + QUEUE_CHUNK])
    report.resolutions_queued = _queue_resolutions(dsn, user_id, rows_out.names)
    report.seconds = time.monotonic() - started
    log.info(report.summary())
    return report.as_dict()
