"""Finding and reading an export's files: zips, folders, single files, by content; broken ones refused
with the file, the zip member and the position."""

import json
import re

import pytest

from weekly_wrapped.ingest.export_files import classify, list_files
from weekly_wrapped.ingest.history_import import ExportError, ImportReport, RowMessages, iter_messages, validate_export

from tests.history_import.exports import account, dumps, extended, podcast, write_zip

GOOD = [extended("2026-11-16T08:00:05Z", 200_000), extended("2026-11-16T08:04:00Z", 10_000)]


def kinds(path) -> dict[str, str]:
    return {f.label.split("!/")[-1].split("/")[-1]: classify(f, f.read()) for f in list_files(path)}


def test_the_zip_spotify_sends_with_a_nested_folder_and_other_files(tmp_path):
    z = write_zip(tmp_path / "my_spotify_data.zip", {
        "Spotify Extended Streaming History/Streaming_History_Audio_2025_0.json": dumps(GOOD),
        "Spotify Extended Streaming History/Streaming_History_Video_2025.json": dumps([podcast("2025-01-01T00:00:00Z")]),
        "Spotify Extended Streaming History/ReadMeFirst_ExtendedStreamingHistory.pdf": b"%PDF-1.4 ...",
        "Spotify Account Data/StreamingHistory_music_0.json": dumps([account("2025-01-01 10:00", 100_000)]),
        "Spotify Account Data/StreamingHistory_podcast_0.json": dumps([]),
        "Spotify Account Data/Userdata.json": json.dumps({"username": "ana", "country": "DE"}).encode(),
        "Spotify Account Data/Playlist1.json": json.dumps({"playlists": []}).encode(),
        "__MACOSX/Spotify Account Data/._StreamingHistory_music_0.json": b"\x00\x05\x16\x07",
    })
    assert kinds(z) == {
        "Streaming_History_Audio_2025_0.json": "extended", "Streaming_History_Video_2025.json": "video",
        "ReadMeFirst_ExtendedStreamingHistory.pdf": "ignored", "StreamingHistory_music_0.json": "account",
        "StreamingHistory_podcast_0.json": "podcast", "Userdata.json": "ignored", "Playlist1.json": "ignored",
        "._StreamingHistory_music_0.json": "ignored"}
    files = validate_export(z)
    report = ImportReport("u", str(z))
    list(iter_messages(files, RowMessages("u", 1, report)))
    assert (report.files_read, report.files_ignored, report.rows, report.plays, report.skip_events) == (4, 4, 4, 2, 1)
    assert report.skipped["video"] == 1


def test_by_content_not_only_by_name(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "renamed.json").write_bytes(dumps(GOOD))
    (tmp_path / "sub" / "my history.json").write_bytes(dumps([account("2025-01-01 10:00", 100_000)]))
    (tmp_path / "notes.json").write_text('{"a": 1}')
    (tmp_path / "inner.bin").write_bytes((tmp_path / "x").write_bytes(b"") or b"")
    write_zip(tmp_path / "sub" / "download (1)", {"a/endsong_0.json": dumps(GOOD)})  # a zip without .zip
    assert kinds(tmp_path) == {"renamed.json": "extended", "my history.json": "account", "notes.json": "ignored",
                               "inner.bin": "ignored", "x": "ignored", "endsong_0.json": "extended"}
    # a single file is read whatever its name
    assert [classify(f, f.read()) for f in list_files(tmp_path / "sub" / "deeper" / "renamed.json")] == ["extended"]


def test_an_export_without_history_is_refused(tmp_path):
    (tmp_path / "Userdata.json").write_text("{}")
    with pytest.raises(ExportError, match="no streaming history"):
        validate_export(tmp_path)
    with pytest.raises(ExportError, match="no such file"):
        validate_export(tmp_path / "missing")


AUDIO = "Streaming_History_Audio_2026_3.json"


def broken_inputs():
    """(name, bytes, regex the message must match after '<file>: '): one per way an export breaks."""
    text = dumps(GOOD).decode()
    lines = text.splitlines()
    bad_row_line = next(i for i, line in enumerate(lines, 1) if line.strip() == "{" and i > 2)
    yield "truncated", text[:-30].encode(), r"line \d+, column \d+ \(byte \d+\): not valid JSON: the file ends too early"
    yield "not utf-8", text.replace("Song", "S\xf6ng").encode("latin-1"), r"line 8, column 37 \(byte \d+\): not UTF-8"
    yield "bom", b"\xef\xbb\xbf" + text.encode(), r"line 1, column 1 \(byte 0\): starts with a byte-order mark"
    yield "deep", text.replace('"platform": "android"', '"platform": "android", "x": ' + "[" * 5000 + "]" * 5000
                               ).encode(), r"line 4, column \d+ \(byte \d+\): nested too deeply"
    yield "wrong type", text.replace('"ms_played": 10000', '"ms_played": "10000"').encode(), \
        rf"line {bad_row_line}, column 3 \(row 2\): ms_played: Expected `int`, got `str`"
    yield "negative", text.replace('"ms_played": 10000', '"ms_played": -1').encode(), rf"line {bad_row_line}, .*row 2.*ms_played"
    yield "no tz", text.replace("08:04:00Z", "08:04:00").encode(), rf"line {bad_row_line}, .*row 2\): ts: .*timezone"
    yield "bad uri", text.replace("spotify:track:4uLU6hMCjMI75M1A2tKUQC", "spotify:episode:abc", 1).encode(), \
        r"line 2, column 3 \(row 1\): spotify_track_uri must look like spotify:track:<id>"
    yield "not an array", b'{"ts": 1}', r"line 1, column 1: expected a JSON array"
    yield "not an object", dumps(GOOD + [5]), r"line \d+, column 3 \(row 3\): the row: Expected `object`, got `int`"
    yield "missing field", dumps(GOOD + [{"ts": "2026-11-16T08:00:05Z"}]), r"row 3\): the row: Object missing required field `ms_played`"
    yield "garbage between rows", text.replace("},\n  {", "} x\n  {", 1).encode(), r"line \d+, column \d+ \(byte \d+\): not valid JSON"
    yield "nested list", dumps([GOOD]), r"row 1\): the row: Expected `object`, got `array`"


@pytest.mark.parametrize("case", list(broken_inputs()), ids=lambda c: c[0])
def test_broken_files_are_refused_with_file_and_position(tmp_path, case):
    _, data, message = case
    # as a single file, in a folder, and inside a zip (then the member is named)
    (tmp_path / "dir" / "nested").mkdir(parents=True)
    (tmp_path / "dir" / "nested" / AUDIO).write_bytes(data)
    (tmp_path / "dir" / "Streaming_History_Audio_2026_0.json").write_bytes(dumps(GOOD))
    z = write_zip(tmp_path / "my_spotify_extended_streaming_history.zip",
                  {"Spotify Extended Streaming History/Streaming_History_Audio_2026_0.json": dumps(GOOD),
                   f"Spotify Extended Streaming History/{AUDIO}": data})
    for path, label in ((tmp_path / "dir" / "nested" / AUDIO, str(tmp_path / "dir" / "nested" / AUDIO)),
                        (tmp_path / "dir", str(tmp_path / "dir" / "nested" / AUDIO)),
                        (z, f"{z}!/Spotify Extended Streaming History/{AUDIO}")):
        with pytest.raises(ExportError) as e:
            validate_export(path)
        assert str(e.value).startswith(label + ": ")
        assert re.search(message, str(e.value)[len(label) + 2:]), str(e.value)
        assert "Traceback" not in str(e.value)


def test_account_data_with_a_bad_end_time_is_refused(tmp_path):
    f = tmp_path / "StreamingHistory_music_1.json"
    f.write_bytes(dumps([account("2025-01-01 10:00", 1), account("2025-01-01T10:00:00Z", 1)]))
    with pytest.raises(ExportError, match=r"StreamingHistory_music_1.json: line 8, column 3 \(row 2\): endTime"):
        validate_export(f)


def test_a_zip_that_is_not_a_zip_or_is_damaged(tmp_path):
    fake = tmp_path / "my_spotify_data.zip"
    fake.write_bytes(b"<html>expired download link</html>")
    with pytest.raises(ExportError, match=r"my_spotify_data.zip: byte 0: named .zip but not a zip"):
        validate_export(fake)
    z = write_zip(tmp_path / "damaged.zip", {f"x/{AUDIO}": dumps(GOOD * 50)})
    data = bytearray(z.read_bytes())
    data[200:260] = b"\x00" * 60  # inside the compressed member
    z.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=rf"damaged.zip!/x/{AUDIO}: "):
        validate_export(z)


def test_a_file_that_cannot_be_read_is_an_export_error(tmp_path):
    f = tmp_path / "Streaming_History_Audio_0.json"
    f.write_bytes(dumps(GOOD))
    [file] = list_files(f)
    f.unlink()  # gone between listing and reading
    with pytest.raises(ExportError, match=r"Streaming_History_Audio_0.json: cannot be read"):
        file.read()


def test_one_normal_export_chunk_is_read_in_linear_time_even_when_its_last_row_is_bad(tmp_path):
    """16.6k rows, ~12 MB: the old reader took 39 s to parse it (a newline count per row)."""
    import time

    rows = [extended(f"2026-01-01T00:00:{i % 60:02d}Z", 200_000 + i, track=f"Song {i}") for i in range(16_600)]
    f = tmp_path / "Streaming_History_Audio_2026_0.json"
    f.write_bytes(dumps(rows))
    started = time.monotonic()
    validate_export(f)
    assert time.monotonic() - started < 5
    rows[-1]["ms_played"] = "soon"
    f.write_bytes(dumps(rows))
    text = f.read_text()
    line = text[:text.rindex("{")].count("\n") + 1
    started = time.monotonic()
    with pytest.raises(ExportError, match=rf"line {line}, column 3 \(row 16600\): ms_played"):
        validate_export(f)
    assert time.monotonic() - started < 5
