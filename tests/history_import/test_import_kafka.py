"""The import on the real broker and warehouse: private topics, a private database.

What lands on Kafka is read back and compared with an independent reading of the files
(`exports.expected`); a broken export produces nothing and queues nothing.
"""

import json
from dataclasses import dataclass

import pytest

from weekly_wrapped import contracts
from weekly_wrapped.ingest.history_import import ExportError, import_export

from tests.history_import.exports import (
    account, account_podcast, dumps, endsong, expected, extended, nothing, podcast, write_zip,
)
from tests.history_import.test_messages import messy_extended
from tests.support.kafka import private_topics, read_topic
from tests.support.postgres import private_database, sql


@dataclass
class Env:
    dsn: str
    bootstrap: str
    topics: dict[str, str]
    user_id: str

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        return sql(self.dsn, query, params)

    def consume(self, topic: str) -> list[dict]:
        """Every message on one of this test's topics (contract name), in offset order."""
        return read_topic(self.bootstrap, self.topics[topic])

    def run(self, path):
        return import_export(path, self.user_id, self.dsn, {"bootstrap.servers": self.bootstrap}, topics=self.topics)


@pytest.fixture
def env(postgres, kafka):
    with private_database(postgres.dsn, "wrapped_import", schema=True) as (_, dsn), \
            private_topics(kafka.bootstrap, "test.import.", partitions=1) as names:
        e = Env(dsn, kafka.bootstrap, {f"spotify.{k}": v for k, v in names.items()}, "ana-import")
        e.sql("insert into app.users (user_id, email) values (%s, 'ana@example.com')", (e.user_id,))
        yield e


def the_export(tmp_path):
    """Spotify's zip, both histories, nested folders, files to ignore; and what is in it."""
    audio0 = messy_extended(7)
    audio1 = [endsong("2019-02-03T04:05:06Z", 100_000, track="Nocturne", artist="Chopin", album="Nocturnes",
                      uri="spotify:track:5ZULaMDRe2bIzJ0lHfTQwc"), nothing("2019-02-03T05:00:00Z")]
    music = [account("2026-10-02 21:15", 200_000, "아이유", "밤편지"), account("2026-10-02 21:16", 3_000, "Björk", "Jóga"),
             account("2026-10-02 21:16", 3_000, "Björk", "Jóga"), account_podcast("2026-10-02 22:00")]
    files = [("extended", audio0), ("extended", audio1), ("account", music), ("video", [podcast("2026-01-01T00:00:00Z")])]
    z = write_zip(tmp_path / "my_spotify_data.zip", {
        "Spotify Extended Streaming History/Streaming_History_Audio_2025-2026_0.json": dumps(audio0),
        "Spotify Extended Streaming History/old/endsong_0.json": dumps(audio1),
        "Spotify Extended Streaming History/Streaming_History_Video_2026.json": dumps(files[3][1]),
        "Spotify Extended Streaming History/ReadMeFirst_ExtendedStreamingHistory.pdf": b"%PDF-1.4",
        "Spotify Account Data/StreamingHistory_music_0.json": dumps(music),
        "Spotify Account Data/Userdata.json": json.dumps({"username": "ana"}).encode(),
    })
    return z, files


def test_a_whole_export_lands_as_an_independent_count_says(env, tmp_path):
    z, files = the_export(tmp_path)
    truth = expected(files)
    report = env.run(z)

    plays = env.consume(contracts.PLAYS_TOPIC)
    got = sorted((m["played_at"], m["track_id"], m["ms_played"], m["reason_end"], m["shuffle"], m["offline"]) for m in plays)
    assert got == sorted(truth["plays"].elements())
    assert all(m == contracts.validate(contracts.PLAYS_TOPIC, m) and m["user_id"] == env.user_id for m in plays)
    tracks = {m["track_id"]: (m["name"], m["album_id"], m["artist_ids"]) for m in env.consume(contracts.TRACKS_TOPIC)}
    albums = {m["album_id"]: m["name"] for m in env.consume(contracts.ALBUMS_TOPIC)}
    artists = {m["artist_id"]: m["name"] for m in env.consume(contracts.ARTISTS_TOPIC)}
    assert (tracks, albums, artists) == (truth["tracks"], truth["albums"], truth["artists"])

    n_plays = sum(n for k, n in truth["plays"].items() if k[2] >= contracts.MIN_PLAY_MS)
    assert report["files"] == {"read": 4, "ignored": 2}
    assert (report["rows"], report["plays"], report["skip_events"]) == (
        sum(len(rows) for _, rows in files), n_plays, len(plays) - n_plays)
    assert {k: v for k, v in report["skipped"].items() if v} == dict(truth["skipped"])
    assert report["rows"] == report["plays"] + report["skip_events"] + sum(report["skipped"].values())
    assert report["first_played_at"].startswith("2019-02-03T04:05:06")
    assert report["last_played_at_ms"] == max(k[0] for k in truth["plays"])
    assert report["delivered"] == len(plays) + len(tracks) + len(albums) + len(artists)

    # queued after Kafka acknowledged: real ids for metadata, name pairs for resolution, never mixed
    backlog = {r[0] for r in env.sql("select track_id from app.metadata_backlog where user_id = %s", (env.user_id,))}
    assert backlog == truth["real_ids"] and report["metadata_queued"] == len(backlog)
    resolutions = {r[0]: (r[1], r[2]) for r in env.sql(
        "select name_key, artist_name, track_name from app.track_resolutions where user_id = %s and status = 'pending'",
        (env.user_id,))}
    assert resolutions == truth["names"] and report["resolutions_queued"] == 2

    # importing it again: the same messages (natural keys: they land once) and nothing newly queued
    again = env.run(z)
    assert (again["metadata_queued"], again["resolutions_queued"], again["plays"]) == (0, 0, report["plays"])
    assert len(env.consume(contracts.PLAYS_TOPIC)) == 2 * len(plays)


@pytest.mark.parametrize("breakage", ["truncated", "bom", "bad row", "not a zip"])
def test_a_broken_export_produces_nothing_and_queues_nothing(env, tmp_path, breakage):
    good = dumps([extended("2026-11-16T08:00:05Z", 200_000)] * 3)
    bad = {"truncated": good[:-20], "bom": b"\xef\xbb\xbf" + good,
           "bad row": good.replace(b'"ms_played": 200000', b'"ms_played": null', 1)}.get(breakage, good)
    # the broken file comes last: the good ones before it are validated, never produced
    z = write_zip(tmp_path / "export.zip", {"a/Streaming_History_Audio_0.json": good,
                                            "a/StreamingHistory_music_0.json": dumps([account("2025-01-01 10:00", 1)]),
                                            "a/Streaming_History_Audio_9.json": bad})
    if breakage == "not a zip":
        z.write_bytes(b"PK\x03\x04 but then nothing of a zip")
    with pytest.raises(ExportError) as e:
        env.run(z)
    assert str(e.value).startswith(str(z))
    for topic in contracts.TOPICS:
        assert env.consume(topic) == []
    assert env.sql("select count(*) from app.metadata_backlog")[0][0] == 0
    assert env.sql("select count(*) from app.track_resolutions")[0][0] == 0


def test_a_user_who_is_not_onboarded_is_refused(env, tmp_path):
    f = tmp_path / "Streaming_History_Audio_0.json"
    f.write_bytes(dumps([extended("2026-11-16T08:00:05Z", 200_000)]))
    with pytest.raises(ExportError, match="not onboarded"):
        import_export(f, "nobody", env.dsn, {"bootstrap.servers": env.bootstrap}, topics=env.topics)
    assert env.consume(contracts.PLAYS_TOPIC) == []
