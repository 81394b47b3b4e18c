"""Reading a Spotify privacy export: which files it has, what each one is, and its rows (strict).

An export arrives as the zip Spotify sends (`my_spotify_data.zip`,
`my_spotify_extended_streaming_history.zip`, with folders inside), that zip unpacked into a
folder, or single files. `list_files` walks any of them, one `ExportFile` per file (a zip's
members read lazily, so one file at a time is in memory); `classify` says by content (the
keys of its first row), and by name only when the content is silent, what a file is:

- `extended`   Extended streaming history: `Streaming_History_Audio_*.json`, older `endsong_*.json`
- `account`    Account data: `StreamingHistory*.json`, `StreamingHistory_music_*.json` (names, no ids)
- `podcast` / `video` / `audiobook`   files whose rows are all skipped and counted under that reason
- `ignored`    anything else (Userdata.json, Playlist1.json, the ReadMeFirst pdf, ...)

`decode_rows` turns a history file into typed rows (msgspec: C speed, strict types) or raises
ExportError naming the file (and the member inside the zip) and where it broke: line and
column, for a bad row the row's own line. Positions are computed only when something is wrong,
so reading stays linear in the file's size. Pure apart from reading files.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Iterator

import msgspec


class ExportError(ValueError):
    """The export is broken or is not a Spotify privacy export; nothing from it may be produced."""


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first bytes (the second: an empty zip)
BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
PEEK_BYTES = 64 * 1024

AwareDatetime = Annotated[dt.datetime, msgspec.Meta(tz=True)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


# gc=False: rows hold only scalars (no cycles), so the collector need not track 16k objects a file.
class ExtendedRow(msgspec.Struct, frozen=True, gc=False):
    """One row of the extended streaming history; every field Spotify documents, so that two rows
    equal here are exact duplicates. Unknown extra fields are allowed (and ignored)."""

    ts: AwareDatetime
    ms_played: NonNegative
    username: str | None = None
    platform: str | None = None
    conn_country: str | None = None
    ip_addr: str | None = None
    ip_addr_decrypted: str | None = None
    user_agent_decrypted: str | None = None
    master_metadata_track_name: str | None = None
    master_metadata_album_artist_name: str | None = None
    master_metadata_album_album_name: str | None = None
    spotify_track_uri: str | None = None
    episode_name: str | None = None
    episode_show_name: str | None = None
    spotify_episode_uri: str | None = None
    audiobook_title: str | None = None
    audiobook_uri: str | None = None
    audiobook_chapter_uri: str | None = None
    audiobook_chapter_title: str | None = None
    reason_start: str | None = None
    reason_end: str | None = None
    shuffle: bool | None = None
    skipped: bool | None = None
    offline: bool | None = None
    offline_timestamp: NonNegative | None = None  # epoch seconds in some exports, milliseconds in others
    incognito_mode: bool | None = None


class AccountRow(msgspec.Struct, frozen=True, gc=False):
    """One row of the account-data history: minute precision, names only."""

    endTime: str
    msPlayed: NonNegative
    artistName: str | None = None
    trackName: str | None = None
    podcastName: str | None = None
    episodeName: str | None = None


_DECODERS = {
    "extended": msgspec.json.Decoder(list[ExtendedRow]),
    "account": msgspec.json.Decoder(list[AccountRow]),
    "skipped": msgspec.json.Decoder(list[dict]),
}

HISTORY_KINDS = ("extended", "account")
SKIPPED_KINDS = ("podcast", "video", "audiobook")


@dataclass(frozen=True)
class ExportFile:
    """One file of the export: `label` names it in messages (`x.zip!/folder/file.json` for a member)."""

    label: str
    name: str        # the base name
    given: bool      # given by itself (not found in a folder or a zip): always read as a history file
    read: Callable[[], bytes]


# --- which files -----------------------------------------------------------------------------------

def _is_zip(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) in ZIP_MAGIC
    except OSError as e:
        raise ExportError(f"{path}: cannot be read ({e.strerror or e})") from None


def _file_reader(path: Path) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            return path.read_bytes()
        except OSError as e:
            raise ExportError(f"{path}: cannot be read ({e.strerror or e})") from None
    return read


def _zip_members(path: Path) -> Iterator[ExportFile]:
    try:
        archive = zipfile.ZipFile(path)
        infos = sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename)
    except (zipfile.BadZipFile, OSError) as e:
        raise ExportError(f"{path}: not a readable zip archive ({e})") from None

    def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            try:
                return archive.read(info)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as e:
                raise ExportError(f"{path}!/{info.filename}: cannot be extracted ({e})") from None
        return read

    for info in infos:
        yield ExportFile(f"{path}!/{info.filename}", info.filename.rsplit("/", 1)[-1], False, reader(info))


def list_files(path: Path) -> list[ExportFile]:
    """Every file of an export given as a zip, a folder (recursively, zips inside it included) or one file."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such file or folder")
    if path.is_dir():
        files: list[ExportFile] = []
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            files.extend(_zip_members(p) if _is_zip(p) else
                         [ExportFile(str(p), p.name, False, _file_reader(p))])
        return files
    if _is_zip(path):
        return list(_zip_members(path))
    if path.suffix.lower() == ".zip":
        raise ExportError(f"{path}: byte 0: named .zip but not a zip archive")
    return [ExportFile(str(path), path.name, True, _file_reader(path))]


# --- what each file is -------------------------------------------------------------------------------

def _kind_by_name(name: str) -> str | None:
    lower = name.lower()
    if not lower.endswith(".json") or lower.startswith("._"):
        return None
    if lower.startswith("streaming_history_video"):
        return "video"
    if "audiobook" in lower:
        return "audiobook"
    if lower.startswith("streaminghistory_podcast"):
        return "podcast"
    if lower.startswith(("streaming_history_audio", "endsong")):
        return "extended"
    if lower.startswith("streaminghistory"):
        return "account"
    return None


_FIRST_OBJECT = re.compile(rb'\s*\[\s*\{(.*?)\}', re.S)


def _kind_by_content(head: bytes) -> str | None:
    """What the first row's keys say (None: not a list of rows we know, or nothing to see)."""
    for bom in BOMS:
        if head.startswith(bom):
            head = head[len(bom):]
            break
    m = _FIRST_OBJECT.match(head)
    if not m:
        return None
    keys = set(re.findall(rb'"([A-Za-z_]+)"\s*:', m.group(1)))
    if b"ts" in keys and b"ms_played" in keys:
        if b"audiobook_title" in keys and b"master_metadata_track_name" not in keys:
            return "audiobook"
        return "extended"
    if b"endTime" in keys and b"msPlayed" in keys:
        return "podcast" if b"podcastName" in keys or b"episodeName" in keys else "account"
    return None


def classify(file: ExportFile, data: bytes) -> str:
    """`extended`, `account`, `podcast`, `video`, `audiobook` or `ignored`."""
    by_name = _kind_by_name(file.name)
    if file.name.startswith("._") or "__MACOSX/" in file.label:
        return "ignored"  # macOS resource forks, named like the files they shadow
    if by_name in SKIPPED_KINDS:
        return by_name  # a video/podcast/audiobook file says so in its name; its rows look like audio
    by_content = _kind_by_content(data[:PEEK_BYTES]) if (by_name or file.name.lower().endswith(".json")
                                                          or file.given) else None
    if by_content:
        return by_content
    if by_name:
        return by_name  # read strictly: what is wrong with it gets a position
    return "extended" if file.given else "ignored"


# --- rows ---------------------------------------------------------------------------------------------

def position(data: bytes, offset: int) -> str:
    """'line L, column C' of a byte offset (columns count bytes, from 1)."""
    offset = max(0, min(offset, len(data)))
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def row_offset(data: bytes, index: int) -> int:
    """Byte offset where element `index` of the top-level array starts (the file is valid JSON)."""
    text = data.decode("utf-8")
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    ws = re.compile(r"[\s,]*")
    for _ in range(index):
        pos = ws.match(text, pos).end()
        _, pos = decoder.raw_decode(text, pos)
    pos = ws.match(text, pos).end()
    return len(text[:pos].encode("utf-8"))


def row_error(file: ExportFile, data: bytes, index: int, message: str) -> ExportError:
    """The error for row `index` (0-based) of a file, at that row's line."""
    try:
        where = position(data, row_offset(data, index))
    except (ValueError, RecursionError):
        where = "position unknown"
    return ExportError(f"{file.label}: {where} (row {index + 1}): {message}")


def _deepest(data: bytes, limit: int = 200) -> int:
    """Offset where brackets (outside strings) nest deeper than `limit`."""
    depth = 0
    for m in re.finditer(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', data, re.S):
        token = m.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return m.start()
        elif token in (b"]", b"}"):
            depth -= 1
    return 0


def check_bytes(file: ExportFile, data: bytes) -> None:
    """A byte-order mark or bytes that are not UTF-8 are refused, with their byte offset."""
    for bom in BOMS:
        if data.startswith(bom):
            raise ExportError(f"{file.label}: line 1, column 1 (byte 0): starts with a byte-order mark; "
                              "Spotify writes UTF-8 without one (was the file re-saved by an editor?)")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ExportError(f"{file.label}: {position(data, e.start)} (byte {e.start}): not UTF-8 ({e.reason})") from None


_AT_ROW = re.compile(r"at `\$\[(\d+)\](.*)`$")
_AT_BYTE = re.compile(r"\(byte (\d+)\)")


def decode_rows(file: ExportFile, data: bytes, kind: str) -> list:
    """The rows of a history file (`ExtendedRow`/`AccountRow`; dicts for skipped kinds), or ExportError."""
    decoder = _DECODERS[kind if kind in HISTORY_KINDS else "skipped"]
    try:
        return decoder.decode(data)
    except RecursionError:
        offset = _deepest(data)
        raise ExportError(f"{file.label}: {position(data, offset)} (byte {offset}): nested too deeply") from None
    except msgspec.ValidationError as e:
        msg = str(e)
        m = _AT_ROW.search(msg)
        if m:
            field = m.group(2).lstrip(".") or "the row"
            what = msg[:m.start()].rstrip(" -")
            expected = ("an object with 'ts' and 'ms_played'" if kind == "extended" else
                        "an object with 'endTime' and 'msPlayed'" if kind == "account" else "an object")
            if what.startswith("Object missing required field"):
                what += f"; each row must be {expected}"
            raise row_error(file, data, int(m.group(1)), f"{field}: {what}") from None
        raise ExportError(f"{file.label}: line 1, column 1: expected a JSON array of plays ({msg})") from None
    except msgspec.DecodeError as e:
        msg = str(e)
        check_bytes(file, data)  # the precise reason, if it is the encoding
        m = _AT_BYTE.search(msg)
        if "truncated" in msg:
            offset, msg = len(data), "the file ends too early (truncated?)"
        else:
            offset = int(m.group(1)) if m else 0
        raise ExportError(f"{file.label}: {position(data, offset)} (byte {offset}): not valid JSON: {msg}") from None
