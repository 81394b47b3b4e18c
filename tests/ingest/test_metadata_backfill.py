"""The metadata backfill on the real stack: a privacy export imported for real (private topics),
then its tracks' albums and artists looked up one id at a time on a private fake Spotify."""

import json
import time
from collections import Counter
from dataclasses import replace

import pytest

from weekly_wrapped import contracts
from weekly_wrapped.ingest import history_import, metadata_backfill
from wrapped_dev.demo import export_records
from weekly_wrapped.ingest.producer import DeliveryFailed

DAY = 86_400_000


def import_export(env, tmp_path, user_id: str, days: int) -> dict:
    """Write the listener's last `days` as a privacy export and import it onto the test's topics."""
    folder = tmp_path / user_id
    folder.mkdir(parents=True)
    records = export_records(env.fake.seed, env.fake.users[user_id], env.start_ms - days * DAY, env.start_ms)
    (folder / "Streaming_History_Audio_0.json").write_text(json.dumps(records))
    return history_import.import_export(folder, user_id, env.dsn, {"bootstrap.servers": env.bootstrap},
                                        topics=env.topics)


def backfill(env, per_run: int):
    # user_ids: only this test's rows, never the demo's or another test's
    return metadata_backfill.backfill(env.cfg, per_run, user_ids=env.user_ids)


def backlog(env) -> dict[str, tuple]:
    rows = env.sql("select track_id, done_at is not null, attempts, last_error from app.metadata_backlog "
                   "where user_id = any(%s)", (env.user_ids,))
    return {r[0]: r[1:] for r in rows}


def test_export_tracks_get_albums_and_artists_each_entity_fetched_once_across_runs(ingest_env, tmp_path):
    env = ingest_env
    ana = env.user_ids[0]
    env.run([ana])  # the hourly poll first: the last 50 plays' tracks arrive complete from the API
    polled = {t["track_id"] for t in env.consume(contracts.TRACKS_TOPIC)}
    artists_before = env.counts()["GET /v1/artists/{id}"]

    # 10 days: enough tracks beyond the poll's last 50 whatever the test's random seed (45+ seen)
    summary = import_export(env, tmp_path, ana, days=10)
    export_tracks = env.consume(contracts.TRACKS_TOPIC)[len(polled):]
    exported = {t["track_id"] for t in export_tracks}
    # the export names albums and artists but has no ids for them: name-only entities until looked up
    assert all(contracts.is_name_key(t["album_id"]) and all(contracts.is_name_key(a) for a in t["artist_ids"])
               for t in export_tracks)
    queued = exported - polled
    assert summary["metadata_queued"] == len(queued) > 10 and set(backlog(env)) == queued
    n_tracks_before = len(env.consume(contracts.TRACKS_TOPIC))

    first = backfill(env, 10)  # a bounded slice ...
    assert (first.selected, first.completed, first.stopped, first.token_user) == (10, 10, None, ana)
    second = backfill(env, 10_000)  # ... and the rest in the next run
    assert (second.completed, second.stopped) == (len(queued) - 10, None)
    assert all(done and attempts == 0 for done, attempts, _ in backlog(env).values())

    # every queued track now has its album and artists, produced once
    filled = env.consume(contracts.TRACKS_TOPIC)[n_tracks_before:]
    assert Counter(t["track_id"] for t in filled) == Counter(queued)
    assert all(t["album_id"] and t["artist_ids"] and t["duration_ms"] for t in filled)
    assert all(t["fetched_at"] > max(e["fetched_at"] for e in export_tracks) for t in filled)  # wins the upsert
    # (the export's own name-only albums and artists aside)
    albums = [a for a in env.consume(contracts.ALBUMS_TOPIC) if not contracts.is_name_key(a["album_id"])]
    artists = [a for a in env.consume(contracts.ARTISTS_TOPIC) if not contracts.is_name_key(a["artist_id"])]
    assert {t["album_id"] for t in filled} <= {a["album_id"] for a in albums}
    assert {a for t in filled for a in t["artist_ids"]} <= {a["artist_id"] for a in artists}
    assert all(a["image_url"] for a in artists)
    # once per entity across the poll and both backfill runs: no entity produced or looked up twice
    assert max(Counter(a["album_id"] for a in albums).values()) == 1
    assert max(Counter(a["artist_id"] for a in artists).values()) == 1
    counts = env.counts()
    assert counts["GET /v1/tracks/{id}"] == len(queued)  # none for the tracks the poll had brought
    assert counts["GET /v1/artists/{id}"] == len(artists) > artists_before
    assert "GET /v1/albums/{id}" not in counts  # the track's own album object was complete

    third = backfill(env, 10_000)
    assert third.selected == 0 and env.counts() == counts
    # importing the same export again queues nothing new and re-opens nothing
    assert import_export(env, tmp_path / "again", ana, days=10)["metadata_queued"] == 0
    assert backfill(env, 10_000).selected == 0


def test_long_429_stops_the_run_without_sleeping_and_keeps_the_backlog(ingest_env, tmp_path):
    env = ingest_env
    yuki = env.user_ids[2]
    queued = import_export(env, tmp_path, yuki, days=4)["metadata_queued"]
    order = [t for t, _ in metadata_backfill.pending(env.dsn, 10_000, env.user_ids)]
    assert len(order) == queued > 5
    blocked = order[3]
    env.control("fault", kind="429", retry_after=7200, path=f"/v1/tracks/{blocked}")

    started = time.monotonic()
    result = backfill(env, 10_000)
    assert time.monotonic() - started < 30  # no waiting out a two-hour Retry-After
    assert "429 Retry-After 7200s" in result.stopped and result.completed == 3
    rows = backlog(env)
    assert [t for t in order if rows[t][0]] == order[:3]  # what was fetched before the 429 is kept
    assert rows[blocked][:2] == (False, 0) and "429" in rows[blocked][2]  # noted, not counted against it
    assert sum(1 for done, _, _ in rows.values() if not done) == queued - 3
    produced = [t["track_id"] for t in env.consume(contracts.TRACKS_TOPIC)
                if t["album_id"] and not contracts.is_name_key(t["album_id"])]  # fetched, not the export's names
    assert produced == order[:3]

    # the next run carries on where this one stopped
    result = backfill(env, 10_000)
    assert (result.completed, result.stopped) == (queued - 3, None)
    assert all(done for done, _, _ in backlog(env).values())
    assert env.counts()["GET /v1/tracks/{id}"] == queued + 1  # each once, plus the one answered 429


def test_revoked_token_marks_its_owner_and_the_next_run_borrows_another(ingest_env, tmp_path):
    env = ingest_env
    ana, marcus = env.user_ids[0], env.user_ids[1]
    queued = import_export(env, tmp_path, ana, days=3)["metadata_queued"]
    assert queued > 0
    env.control("fault", kind="invalid_grant", user_id=ana)

    result = backfill(env, 10_000)
    assert result.token_user == ana and "NeedsReauth" in result.stopped and result.completed == 0
    assert env.sql("select status from app.users where user_id = %s", (ana,))[0][0] == "needs_reauth"

    result = backfill(env, 10_000)
    assert (result.token_user, result.completed, result.stopped) == (marcus, queued, None)


def test_nothing_is_marked_done_unless_kafka_acknowledged(ingest_env, tmp_path):
    env = ingest_env
    marcus = env.user_ids[1]
    queued = import_export(env, tmp_path, marcus, days=3)["metadata_queued"]
    assert queued > 0
    # The tracks topic is missing (auto-create is off): those messages are never acknowledged.
    broken = {**env.topics, contracts.TRACKS_TOPIC: env.topics[contracts.TRACKS_TOPIC] + "-missing"}
    cfg = replace(env.cfg, topics=broken, kafka_config={**env.cfg.kafka_config, "message.timeout.ms": 3000})
    with pytest.raises(DeliveryFailed):
        metadata_backfill.backfill(cfg, 10_000, user_ids=env.user_ids)
    assert not any(done for done, _, _ in backlog(env).values())
    assert env.sql("select count(*) from app.entity_cache where entity_type = 'track' and entity_id = any(%s)",
                   (list(backlog(env)),))[0][0] == 0

    # Airflow's retry does the same slice again, and this time it lands.
    result = backfill(env, 10_000)
    assert (result.completed, result.stopped) == (queued, None)
    assert all(done for done, _, _ in backlog(env).values())
