"""Reading a Spotify privacy export: strict, with the line that broke it."""

import json

import pytest

from weekly_wrapped.ingest.history_import import ExportError, parse_export, read_export, to_messages


def record(ts="2026-11-16T08:00:05Z", ms=200_000, uri="spotify:track:4uLU6hMCjMI75M1A2tKUQC", name="Song"):
    return {"ts": ts, "platform": "linux", "ms_played": ms, "conn_country": "DE",
            "master_metadata_track_name": name, "master_metadata_album_artist_name": "Artist",
            "master_metadata_album_album_name": "Album", "spotify_track_uri": uri,
            "episode_name": None, "reason_start": "trackdone", "reason_end": "trackdone",
            "shuffle": False, "skipped": False, "offline": False, "incognito_mode": False}


def export(*records):
    return json.dumps(list(records), indent=2)


def test_parses_records_with_their_lines():
    records = parse_export(export(record(), record(ts="2026-11-16T08:04:00Z")))
    assert [r.line for r in records] == [2, 19]
    assert records[0].ts_ms == 1_794_816_005_000
    assert records[0].track_id == "4uLU6hMCjMI75M1A2tKUQC"


def test_truncated_file_is_refused_with_its_line():
    text = export(record(), record())[:-40]
    with pytest.raises(ExportError, match=r"f\.json:\d+: not valid JSON"):
        parse_export(text, "f.json")


def test_bad_field_names_the_line_of_its_record():
    text = export(record(), record(ms="lots"))
    with pytest.raises(ExportError, match=r"^x:19: 'ms_played' must be"):
        parse_export(text, "x")


def test_bad_timestamp_and_wrong_uri_are_refused():
    with pytest.raises(ExportError, match="bad 'ts'"):
        parse_export(export(record(ts="yesterday")))
    with pytest.raises(ExportError, match="spotify:track"):
        parse_export(export(record(uri="spotify:episode:abc")))


def test_short_account_history_gets_a_helpful_error():
    with pytest.raises(ExportError, match="Extended streaming history"):
        parse_export(json.dumps([{"endTime": "2024-01-01 12:00", "artistName": "a", "trackName": "b",
                                  "msPlayed": 1}]))


def test_not_an_array_is_refused():
    with pytest.raises(ExportError, match=":1: expected a JSON array"):
        parse_export('{"ts": 1}')


def test_messages_skip_podcasts_and_short_plays_and_collapse_duplicates():
    records = parse_export(export(
        record(), record(),                       # the same play in two files
        record(ts="2026-11-16T09:00:00Z", ms=10_000),  # a skip
        record(ts="2026-11-16T10:00:00Z", uri=None),   # a podcast episode
    ))
    plays, tracks = to_messages(records, "u1", ingested_at_ms=1)
    assert len(plays) == 1
    assert plays[0]["source"] == "export" and plays[0]["ms_played"] == 200_000
    assert list(plays[0])[0] == "schema_version"
    assert tracks == [{"schema_version": 1, "track_id": "4uLU6hMCjMI75M1A2tKUQC", "name": "Song",
                       "duration_ms": None, "explicit": None, "popularity": None, "album_id": None,
                       "artist_ids": None, "track_number": None, "fetched_at": 1_794_816_005_000}]


def test_reads_every_audio_file_of_a_folder(tmp_path):
    (tmp_path / "Streaming_History_Audio_2025_0.json").write_text(export(record()))
    (tmp_path / "Streaming_History_Audio_2026_1.json").write_text(export(record(ts="2026-11-17T08:00:00Z")))
    (tmp_path / "Streaming_History_Video_2026.json").write_text("not even json")
    assert len(read_export(tmp_path)) == 2
