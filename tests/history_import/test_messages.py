"""From rows to messages (pure): every row a play, a skip event or a counted skip, names as entities."""

import random

from weekly_wrapped import contracts
from weekly_wrapped.ingest.export_files import ExportFile
from weekly_wrapped.ingest.history_import import ImportReport, RowMessages, iter_messages

from tests.history_import.exports import (
    account, account_podcast, audiobook, dumps, endsong, expected, extended, nothing, podcast,
)

USER = "u-ana"


def as_file(name: str, rows: list) -> ExportFile:
    data = dumps(rows)
    return ExportFile(name, name, False, lambda: data)


def run(files: list[tuple[str, list]]) -> tuple[ImportReport, list[tuple[str, dict]], RowMessages]:
    report = ImportReport(USER, "test")
    rows_out = RowMessages(USER, 123, report)
    messages = list(iter_messages([as_file(name, rows) for name, rows in files], rows_out))
    return report, messages, rows_out


def messy_extended(seed: int = 1) -> list[dict]:
    """Music of several artists (Hangul, escaped quotes), skips, podcasts, audiobooks, nulls, duplicates,
    offline timestamps in s and ms, shuffled."""
    rnd = random.Random(seed)
    tracks = [("아이유", "밤편지", "Palette", "3P3UA61WRQqwCXaoFOTENd"),
              ('The "Quoted" Band', 'Say "Hi"', 'Live at "The Hall"', "0VjIjW4GlUZAMYd2vXMi3b"),
              ("Sigur Rós", "Hoppípolla", "Takk...", "6eTGxxQxiTFE6LfZHC33Wm"),
              ("Artist", "Other Song", "Album", "1AhDOtG9vPSOmsWgNW0BEY")]
    rows = []
    for i in range(400):
        artist, track, album, tid = tracks[i % len(tracks)]
        ts = f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}Z"
        ms = rnd.choice([0, 5_000, 29_999, 30_000, 31_000, 240_000])
        offline = i % 5 == 0
        rows.append(extended(ts, ms, track, artist, album, f"spotify:track:{tid}", offline=offline,
                             offline_timestamp=(1_790_000_000 + i if i % 2 else 1_790_000_000_000 + i) if offline else None,
                             reason_end=rnd.choice(["trackdone", "fwdbtn", "endplay", None]),
                             shuffle=rnd.choice([True, False, None])))
    rows += [podcast(f"2026-10-03T0{h}:00:00Z") for h in range(4)]
    rows += [audiobook("2026-10-04T05:00:00Z"), nothing("2026-10-04T06:00:00Z"), nothing("2026-10-04T07:00:00Z")]
    rows += [dict(rows[3]), dict(rows[10]), dict(rows[10])]  # exact duplicates, one of them twice
    rnd.shuffle(rows)
    return rows


def test_a_messy_extended_export_equals_an_independent_count():
    rows = messy_extended()
    report, messages, rows_out = run([("Streaming_History_Audio_2026.json", rows)])
    truth = expected([("extended", rows)])

    plays = [m for t, m in messages if t == contracts.PLAYS_TOPIC]
    assert sorted((m["played_at"], m["track_id"], m["ms_played"], m["reason_end"], m["shuffle"], m["offline"])
                  for m in plays) == sorted(truth["plays"].elements())
    assert all(m["source"] == "export" and m["user_id"] == USER and m["context_uri"] is None for m in plays)
    assert report.plays == sum(n for k, n in truth["plays"].items() if k[2] >= 30_000)
    assert report.skip_events == sum(n for k, n in truth["plays"].items() if k[2] < 30_000) > 0
    assert {k: v for k, v in report.skipped.items() if v} == dict(truth["skipped"])
    assert truth["skipped"] == {"podcast": 4, "audiobook": 1, "no_track": 2, "duplicate": 3}
    assert report.rows == len(rows) == report.plays + report.skip_events + sum(report.skipped.values())
    assert report.first_played_at_ms == min(k[0] for k in truth["plays"])
    assert report.last_played_at_ms == max(k[0] for k in truth["plays"])

    # the names, at once, each entity once, fetched_at 0
    tracks = {m["track_id"]: (m["name"], m["album_id"], m["artist_ids"]) for t, m in messages if t == contracts.TRACKS_TOPIC}
    albums = {m["album_id"]: m["name"] for t, m in messages if t == contracts.ALBUMS_TOPIC}
    artists = {m["artist_id"]: m["name"] for t, m in messages if t == contracts.ARTISTS_TOPIC}
    assert tracks == truth["tracks"] and albums == truth["albums"] and artists == truth["artists"]
    assert "아이유" in artists.values() and 'The "Quoted" Band' in artists.values()
    entity_messages = [m for t, m in messages if t != contracts.PLAYS_TOPIC]
    assert len(entity_messages) == len(tracks) + len(albums) + len(artists)
    assert all(m["fetched_at"] == 0 for m in entity_messages)
    assert rows_out.track_ids == truth["real_ids"] and rows_out.names == {}


def test_every_message_is_what_the_contract_validates():
    rows = messy_extended(2)[:50] + [account("2026-10-01 12:00", 200_000, "아이유", 'Say "Hi"')]
    _, messages, _ = run([("Streaming_History_Audio_0.json", rows[:50]), ("StreamingHistory_music_0.json", rows[50:])])
    for topic, m in messages:
        assert m == contracts.validate(topic, m) and list(m) == list(contracts.validate(topic, m))


def test_entities_come_before_the_first_play_that_names_them():
    _, messages, _ = run([("Streaming_History_Audio_0.json", messy_extended(3))])
    produced = set()
    for topic, m in messages:
        if topic == contracts.PLAYS_TOPIC:
            assert m["track_id"] in produced
        else:
            produced.add(m.get("track_id") or m.get("album_id") or m.get("artist_id"))


def test_account_data_plays_under_name_keys_and_queues_the_names():
    rows = [account("2025-01-05 23:59", 200_000, "아이유", "밤편지"),
            account("2025-01-05 23:50", 10_000, "아이유", "밤편지"),          # a skip
            account("2025-01-06 00:03", 180_000, 'The "Quoted" Band', 'Say "Hi"'),
            account("2025-01-06 00:03", 180_000, 'The "Quoted" Band', 'Say "Hi"'),  # duplicate
            account("2025-01-06 01:00", 95_000, "Unknown Artist", None),      # no track
            account_podcast("2025-01-06 02:00")]
    report, messages, rows_out = run([("StreamingHistory_music_0.json", rows)])
    truth = expected([("account", rows[:4] + rows[5:])])
    plays = [m for t, m in messages if t == contracts.PLAYS_TOPIC]
    assert sorted((m["played_at"], m["track_id"], m["ms_played"], m["reason_end"], m["shuffle"], m["offline"])
                  for m in plays) == sorted(truth["plays"].elements())
    assert all(contracts.is_name_key(m["track_id"]) for m in plays)
    assert (report.plays, report.skip_events) == (2, 1)
    assert {k: v for k, v in report.skipped.items() if v} == {"duplicate": 1, "no_track": 1, "podcast": 1}
    tracks = {m["track_id"]: (m["name"], m["album_id"], m["artist_ids"]) for t, m in messages if t == contracts.TRACKS_TOPIC}
    assert tracks == truth["tracks"]
    assert rows_out.names == truth["names"] and rows_out.track_ids == set()  # never a name key in the backlog


def test_older_endsong_files_and_skipped_files():
    music = [endsong("2021-03-01T10:00:00Z", 200_000), endsong("2021-03-01T09:00:00Z", 100_000)]
    report, messages, _ = run([
        ("endsong_0.json", music),
        ("StreamingHistory_podcast_0.json", [account_podcast("2021-03-01 11:00")] * 3),
        ("Streaming_History_Video_2021.json", [podcast("2021-03-01T12:00:00Z")] * 2),
        ("Streaming_History_Audiobook_2021.json", [audiobook("2021-03-01T12:00:00Z")]),
    ])
    assert report.plays == 2 and report.rows == 8 and report.files_read == 4
    assert {k: v for k, v in report.skipped.items() if v} == {"podcast": 3, "video": 2, "audiobook": 1}
    assert sum(t == contracts.PLAYS_TOPIC for t, _ in messages) == 2
