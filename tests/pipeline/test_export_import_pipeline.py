"""Privacy exports through the whole pipeline: import -> Kafka -> Spark consumer -> Postgres -> dbt.

The exports are built here in Spotify's real shapes (extended streaming history in a zip with a
nested folder and other files; account data), and every expectation is computed in plain Python
from the rows we wrote, not from our own code.
"""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from collections import Counter
from pathlib import Path

import psycopg2
import psycopg2.extras
import pytest

from weekly_wrapped import contracts, db
from weekly_wrapped.ingest.history_import import import_export
from weekly_wrapped.ingest.producer import StreamProducer
from weekly_wrapped.marts.dbt_runner import Warehouse, dbt_command, dbt_env, default_dbt_bin, run_dbt
from weekly_wrapped.users import accounts

from tests.consumer.consumer_helpers import catch_up, consumer_env
from tests.support import unique
from tests.support.kafka import private_topics
from tests.support.postgres import private_database

WEEK = dt.datetime(2026, 11, 16, tzinfo=dt.timezone.utc)  # a Monday; users below live in UTC
CATALOGUE = [  # (track id, track, album artist, album)
    ("0aaaaaaaaaaaaaaaaaaaa1", "Hoppípolla", "Sigur Rós", "Takk..."),
    ("0aaaaaaaaaaaaaaaaaaaa2", "Spring Day", "방탄소년단", "YOU NEVER WALK ALONE"),
    ("0aaaaaaaaaaaaaaaaaaaa3", 'Say "Yes"', "Elliott Smith", "Either/Or"),
    ("0aaaaaaaaaaaaaaaaaaaa4", "Teardrop", "Massive Attack", "Mezzanine"),
]


def extended_row(ts: dt.datetime, track: tuple | None, ms: int, **extra) -> dict:
    track_id, name, artist, album = track if track else (None, None, None, None)
    row = {
        "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "platform": "android", "ms_played": ms, "conn_country": "DE",
        "ip_addr": "192.0.2.1", "master_metadata_track_name": name, "master_metadata_album_artist_name": artist,
        "master_metadata_album_album_name": album,
        "spotify_track_uri": f"spotify:track:{track_id}" if track_id else None,
        "episode_name": None, "episode_show_name": None, "spotify_episode_uri": None,
        "audiobook_title": None, "audiobook_uri": None, "audiobook_chapter_uri": None,
        "audiobook_chapter_title": None, "reason_start": "trackdone",
        "reason_end": "trackdone" if ms >= 30_000 else "fwdbtn", "shuffle": False, "skipped": ms < 30_000,
        "offline": False, "offline_timestamp": int(ts.timestamp() * 1000), "incognito_mode": False,
    }
    row.update(extra)
    return row


def listening(seed: int) -> list[dict]:
    """A week of extended-history rows: plays, skips, a podcast, an all-null row, a duplicate, unordered."""
    rows = []
    for day in range(7):
        for i, track in enumerate(CATALOGUE):
            for repeat in range((seed + day + i) % 3 + 1):
                ts = WEEK + dt.timedelta(days=day, hours=8 + i, minutes=7 * repeat, seconds=13 + seed)
                rows.append(extended_row(ts, track, 180_000 + 1000 * i))
        rows.append(extended_row(WEEK + dt.timedelta(days=day, hours=20), CATALOGUE[day % 4], 4_000))  # a skip
    podcast = extended_row(WEEK + dt.timedelta(days=2, hours=6), None, 900_000, episode_name="Ep 1",
                           episode_show_name="A Show", spotify_episode_uri="spotify:episode:0bbbbbbbbbbbbbbbbbbbb1")
    rows += [podcast, extended_row(WEEK + dt.timedelta(days=3, hours=5), None, 60_000), dict(rows[3])]
    rows.reverse()  # exports are not in time order
    return rows


def write_extended_zip(path: Path, rows: list[dict]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        half = len(rows) // 2
        z.writestr("Spotify Extended Streaming History/Streaming_History_Audio_2026_0.json",
                   json.dumps(rows[:half], ensure_ascii=False, indent=2))
        z.writestr("Spotify Extended Streaming History/Streaming_History_Audio_2026_1.json",
                   json.dumps(rows[half:], ensure_ascii=False))
        z.writestr("Spotify Extended Streaming History/ReadMeFirst_ExtendedStreamingHistory.pdf", b"%PDF-1.4 ")
    return path


def account_rows(rows: list[dict]) -> list[dict]:
    """The same listening as Spotify's short 'account data' history: minute precision, names, no ids."""
    return [{"endTime": r["ts"][:16].replace("T", " "), "artistName": r["master_metadata_album_artist_name"],
             "trackName": r["master_metadata_track_name"], "msPlayed": r["ms_played"]}
            for r in rows if r["spotify_track_uri"]]


def expected_plays(rows: list[dict]) -> set[tuple[str, str]]:
    return {(r["ts"], r["spotify_track_uri"]) for r in rows
            if r["spotify_track_uri"] and r["ms_played"] >= 30_000}


def expected_skips(rows: list[dict]) -> set[tuple[str, str]]:
    return {(r["ts"], r["spotify_track_uri"]) for r in rows if r["spotify_track_uri"] and r["ms_played"] < 30_000}


@pytest.fixture
def pipeline(postgres, kafka, spark, tmp_path):
    """A private warehouse database and private topics; `land()` runs the consumer and dbt there."""
    with private_database(postgres.dsn, "wrapped_import", schema=True) as (database, dsn), \
            private_topics(kafka.bootstrap, prefix=f"{unique('imp')}.") as by_table:
        warehouse = Warehouse(postgres.host, postgres.port, postgres.user, postgres.password, database)

        def land() -> None:
            catch_up(consumer_env(database, kafka.bootstrap), by_table, tmp_path / "checkpoint",
                     tmp_path / "consumer.log", timeout=300)
            artifacts = tmp_path / "dbt"
            run_dbt(dbt_command(default_dbt_bin(), ("build",), artifacts_dir=artifacts), dbt_env(warehouse),
                    run_results=artifacts / "target" / "run_results.json")

        # The consumer takes {table: topic}; producers take {contract topic: topic}.
        yield dsn, {f"spotify.{table}": topic for table, topic in by_table.items()}, land


def onboard(dsn: str, user_id: str) -> None:
    accounts.save_user(dsn, "ZGVtby1rZXktZG8tbm90LXVzZS1pbi1wcm9kdWN0aW8=", user_id=user_id, display_name=None,
                       email=f"{user_id}@example.org", time_zone="UTC", refresh_token="unused")


def rows_of(dsn: str, sql: str, params=()) -> list[dict]:
    conn = db.connect(dsn)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            return [dict(r) for r in cur.fetchall()]
    finally:
        conn.close()


def test_every_format_lands_each_play_once_with_its_artists_on_the_day_of_the_import(
        pipeline, kafka, tmp_path):
    dsn, topics, land = pipeline
    kafka_config = {"bootstrap.servers": kafka.bootstrap}
    extended, both_ways, reversed_order = "ext-only", "ext-then-account", "account-then-ext"
    rows = {user: listening(seed) for seed, user in enumerate((extended, both_ways, reversed_order))}
    for user in rows:
        onboard(dsn, user)

    def import_extended(user):
        return import_export(write_extended_zip(tmp_path / f"{user}.zip", rows[user]), user, dsn,
                             kafka_config, topics=topics)

    def import_account(user):
        folder = tmp_path / f"{user}-account"
        folder.mkdir()
        (folder / "StreamingHistory_music_0.json").write_text(json.dumps(account_rows(rows[user]),
                                                                         ensure_ascii=False))
        (folder / "StreamingHistory_podcast_0.json").write_text(json.dumps(
            [{"endTime": "2026-11-18 06:15", "podcastName": "A Show", "episodeName": "Ep 1", "msPlayed": 900000}]))
        (folder / "Userdata.json").write_text(json.dumps({"username": user}))
        return import_export(folder, user, dsn, kafka_config, topics=topics)

    report = import_extended(extended)
    import_extended(both_ways)
    import_account(both_ways)
    import_account(reversed_order)
    import_extended(reversed_order)
    import_extended(extended)  # a second import of the same export adds nothing

    plays = expected_plays(rows[extended])
    assert report["plays"] == len(plays) and report["skip_events"] == len(expected_skips(rows[extended]))
    assert report["skipped"]["podcast"] == 1 and report["skipped"]["no_track"] == 1
    assert report["skipped"]["duplicate"] == 1

    # Every user's latest plays were polled too: copies a few seconds after the export's own time.
    producer = StreamProducer(kafka_config, topics)
    for user, user_rows in rows.items():
        for ts, uri in sorted(expected_plays(user_rows))[-5:]:
            played_at = int(dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000) + 2_000
            producer.send(contracts.PLAYS_TOPIC, {"user_id": user, "played_at": played_at,
                                                  "track_id": uri.split(":")[-1], "context_uri": None,
                                                  "source": "api", "ms_played": None,
                                                  "ingested_at": played_at + 60_000})
    producer.flush()

    # The search endpoint found every account-data name pair (the resolver itself is tested elsewhere).
    with db.transaction(dsn) as cur:
        for track_id, name, artist, _ in CATALOGUE:
            cur.execute("update app.track_resolutions set track_id = %s, status = 'resolved', "
                        "resolved_at = now() where name_key = %s",
                        (track_id, contracts.name_key("track", artist, name)))
            assert cur.rowcount == 1, f"{artist} - {name} queued once, whoever imported it"
    land()

    counted = {r["user_id"]: r["n"] for r in rows_of(dsn, "select user_id, count(*) as n from marts.fct_plays "
                                                          "group by user_id")}
    assert counted == {user: len(expected_plays(user_rows)) for user, user_rows in rows.items()}
    skips = rows_of(dsn, "select user_id, count(*) as n from marts.fct_skips group by user_id")
    assert {r["user_id"]: r["n"] for r in skips} == {u: len(expected_skips(r)) for u, r in rows.items()}

    (week,) = rows_of(dsn, "select * from marts.wrapped_weekly where user_id = %s", (extended,))
    artist_of_play = {(r["ts"], r["spotify_track_uri"]): r["master_metadata_album_artist_name"]
                      for r in rows[extended] if r["spotify_track_uri"] and r["ms_played"] >= 30_000}
    plays_by_artist = Counter(artist_of_play.values())  # the duplicate row is one play
    assert {a["name"]: a["plays"] for a in week["top_artists"]} == dict(plays_by_artist)
    assert week["plays"] == len(plays)
    assert week["skip_events"] == len(expected_skips(rows[extended]))
