"""Track resolution on the real stack: name pairs queued in app.track_resolutions (as an account-data
import queues them) resolved through a private fake Spotify's search, metadata on private topics."""

import json
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from weekly_wrapped import contracts
from weekly_wrapped.ingest import history_import, track_resolution
from weekly_wrapped.ingest.producer import DeliveryFailed
from weekly_wrapped.spotify.client import UserSession
from wrapped_dev.fakes import demo_listener as dl

DAY = 86_400_000


@pytest.fixture
def env(make_ingest_env):
    env = make_ingest_env()
    yield env
    env.sql("delete from app.track_resolutions where user_id = any(%s)", (env.user_ids,))


def listened_pairs(env, user_id: str, n: int) -> dict[tuple[str, str], str]:
    """(artist, track) -> track id for `n` distinct tracks the user played, each pair unique in the catalogue."""
    cat = env.fake.catalogue
    owners = Counter((cat.artists[t.artist_ids[0]].name.casefold(), t.name.casefold()) for t in cat.tracks.values())
    pairs: dict[tuple[str, str], str] = {}
    for play in dl.plays_between(env.fake.seed, env.fake.users[user_id], env.start_ms - 14 * DAY, env.start_ms):
        t = cat.tracks[play.track_id]
        artist = cat.artists[t.artist_ids[0]].name
        if owners[(artist.casefold(), t.name.casefold())] == 1:
            pairs.setdefault((artist, t.name), t.id)
        if len(pairs) == n:
            return pairs
    raise AssertionError("not enough distinct tracks")


def queue(env, user_id: str, pairs) -> list[str]:
    """Rows as the account-data import writes them (one per name pair), oldest first in the given order."""
    keys = []
    for i, (artist, track) in enumerate(pairs):
        key = contracts.name_key("track", artist, track)
        env.sql("insert into app.track_resolutions (name_key, artist_name, track_name, user_id, queued_at) "
                "values (%s, %s, %s, %s, now() - make_interval(secs => %s)) on conflict do nothing",
                (key, artist, track, user_id, 1000 - i))
        keys.append(key)
    return keys


def rows(env) -> dict[str, tuple]:
    found = env.sql("select name_key, status, track_id, attempts, last_error from app.track_resolutions "
                    "where user_id = any(%s)", (env.user_ids,))
    return {r[0]: r[1:] for r in found}


def resolve(env, per_run: int = 10_000, cfg=None):
    # user_ids: only this test's rows, never the demo's or another test's
    return track_resolution.resolve(cfg or env.cfg, per_run, user_ids=env.user_ids)


def test_name_pairs_resolve_once_across_runs_with_their_metadata_on_kafka(env):
    ana = env.user_ids[0]
    truth = listened_pairs(env, ana, 12)
    # the export's spelling need not be Spotify's: case differs, the row still resolves
    pairs = [(a.upper(), t.lower()) if i % 3 == 0 else (a, t) for i, (a, t) in enumerate(truth)]
    keys = queue(env, ana, pairs)
    expected = dict(zip(keys, truth.values()))

    first = resolve(env, 5)  # the budget bounds the look-ups ...
    assert (first.selected, first.searched, first.resolved, first.stopped, first.token_user) == (5, 5, 5, None, ana)
    second = resolve(env)  # ... and the next run does the rest
    assert (second.searched, second.resolved, second.not_found, second.stopped) == (7, 7, 0, None)
    assert {k: (status, track_id, attempts) for k, (status, track_id, attempts, _) in rows(env).items()} == {
        k: ("resolved", track_id, 1) for k, track_id in expected.items()}
    counts = env.counts()
    assert counts["GET /v1/search"] == 12

    # the resolved tracks have names, albums and artists with images, each entity produced once
    tracks = env.consume(contracts.TRACKS_TOPIC)
    assert Counter(t["track_id"] for t in tracks) == Counter(expected.values())
    assert all(t["name"] and t["album_id"] and t["artist_ids"] and t["duration_ms"] for t in tracks)
    albums = env.consume(contracts.ALBUMS_TOPIC)
    artists = env.consume(contracts.ARTISTS_TOPIC)
    assert {t["album_id"] for t in tracks} <= {a["album_id"] for a in albums}
    assert {a for t in tracks for a in t["artist_ids"]} <= {a["artist_id"] for a in artists}
    assert all(a["image_url"] for a in albums) and all(a["image_url"] for a in artists)
    assert max(Counter(a["album_id"] for a in albums).values()) == 1
    assert max(Counter(a["artist_id"] for a in artists).values()) == 1
    assert counts["GET /v1/artists/{id}"] == len(artists) and "GET /v1/albums/{id}" not in counts
    assert track_resolution.backlog_counts(env.dsn, env.user_ids) == {"pending": 0, "resolved": 12, "not_found": 0}

    # the table is the cache: nothing is searched again, a re-queued pair stays resolved
    third = resolve(env)
    queue(env, ana, pairs)
    assert third.selected == 0 and resolve(env).selected == 0 and env.counts() == counts


def test_an_imported_account_data_export_resolves_to_the_listeners_real_tracks(env, tmp_path):
    marcus = env.user_ids[1]
    cat = env.fake.catalogue
    plays = dl.plays_between(env.fake.seed, env.fake.users[marcus], env.start_ms - 2 * DAY, env.start_ms)
    records = [{"endTime": datetime.fromtimestamp(p.played_at_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M"),
                "artistName": cat.artists[cat.tracks[p.track_id].artist_ids[0]].name,
                "trackName": cat.tracks[p.track_id].name, "msPlayed": p.ms_played} for p in plays]
    (tmp_path / "StreamingHistory_music_0.json").write_text(json.dumps(records, ensure_ascii=False))
    report = history_import.import_export(tmp_path, marcus, env.dsn, {"bootstrap.servers": env.bootstrap},
                                          topics=env.topics)
    pairs = {contracts.name_key("track", r["artistName"], r["trackName"]): (r["artistName"], r["trackName"])
             for r in records}
    assert report["resolutions_queued"] == len(pairs) == len(rows(env))

    result = resolve(env)
    assert (result.resolved, result.not_found, result.stopped) == (len(pairs), 0, None)
    for key, (status, track_id, _, _) in rows(env).items():
        artist, track = pairs[key]
        found = cat.tracks[track_id]  # a real id of the catalogue, with the export's names
        assert status == "resolved" and found.name == track and artist in {cat.artists[a].name for a in found.artist_ids}
    # where the names are the song's alone in the catalogue, that is the very track played
    # (a single and its album's version share them: the search cannot tell those apart)
    owners = Counter(contracts.name_key("track", cat.artists[t.artist_ids[0]].name, t.name)
                     for t in cat.tracks.values())
    truth = {contracts.name_key("track", cat.artists[cat.tracks[p.track_id].artist_ids[0]].name,
                                cat.tracks[p.track_id].name): p.track_id for p in plays}
    unique = {key for key in pairs if owners[key] == 1}
    assert len(unique) > len(pairs) / 2
    assert {key: rows(env)[key][1] for key in unique} == {key: truth[key] for key in unique}
    assert report["resolutions_queued"] == env.counts()["GET /v1/search"]


def test_a_track_already_produced_resolves_without_producing_it_again(env):
    marcus = env.user_ids[1]
    env.run([marcus])  # the hourly poll brings the last 50 plays' tracks, complete
    polled = {t["track_id"] for t in env.consume(contracts.TRACKS_TOPIC)}
    cat = env.fake.catalogue
    t = cat.tracks[sorted(polled)[0]]
    key, = queue(env, marcus, [(cat.artists[t.artist_ids[0]].name, t.name)])
    n_tracks = len(env.consume(contracts.TRACKS_TOPIC))

    result = resolve(env)
    assert rows(env)[key][:2] == ("resolved", t.id) and result.produced[contracts.TRACKS_TOPIC] == 0
    assert len(env.consume(contracts.TRACKS_TOPIC)) == n_tracks


def test_a_track_already_in_the_warehouse_resolves_without_a_search_to_the_users_own_copy(env):
    ana = env.user_ids[0]
    tag = uuid.uuid4().hex[:14]
    artist, song = f"Zoë {tag}", f"Hoppípolla {tag}"
    # two real ids for the same song (album and single, say), the name-only entity, and Ana played one
    artist_id, own, other = (f"{c}{tag}".ljust(22, "0") for c in ("artst", "trkown", "trkoth"))
    name_only = contracts.name_key("track", artist, song)
    try:
        env.sql("insert into raw.artists (artist_id, name, fetched_at) values (%s, %s, now()), (%s, %s, now())",
                (artist_id, artist, "feat" + artist_id[4:], "Someone"))
        env.sql("insert into raw.tracks (track_id, name, artist_ids, fetched_at) values "
                "(%s, %s, %s, now()), (%s, %s, %s, now()), (%s, %s, %s, now())",
                (other, song, [artist_id], own, song, ["feat" + artist_id[4:], artist_id],
                 name_only, song, [artist_id]))
        env.sql("insert into raw.plays (user_id, played_at, track_id, source, ingested_at) "
                "values (%s, now(), %s, 'export', now())", (ana, own))
        key, missing = queue(env, ana, [(artist.upper(), song), (artist, "Not In The Warehouse")])

        result = resolve(env)
        assert (result.already_known, result.selected, result.searched) == (1, 1, 1)  # only the other pair searched
        assert rows(env)[key][:3] == ("resolved", own, 0)  # the same id as the user's copy: the same play
        assert rows(env)[missing][0] == "not_found"
        assert resolve(env).already_known == 0
    finally:
        env.sql("delete from raw.plays where user_id = %s and track_id = %s", (ana, own))
        env.sql("delete from raw.tracks where track_id = any(%s)", ([own, other, name_only],))
        env.sql("delete from raw.artists where artist_id = any(%s)", ([artist_id, "feat" + artist_id[4:]],))


def test_no_exact_match_is_not_found_and_never_searched_again(env):
    yuki = env.user_ids[2]
    (artist, track), track_id = next(iter(listened_pairs(env, yuki, 1).items()))
    pairs = [("Nobody Ever", "No Such Song"),             # nothing comes back
             (artist, track.split()[0] + " (Live)"),     # something else by the artist, but not this
             (artist, track)]
    missing, near, real = queue(env, yuki, pairs)
    result = resolve(env)
    assert (result.searched, result.resolved, result.not_found, result.failed) == (3, 1, 2, 0)
    got = rows(env)
    assert got[missing][:3] == ("not_found", None, 1) and "no exact match" in got[missing][3]
    assert got[near][:3] == ("not_found", None, 1)
    assert got[real][:2] == ("resolved", track_id)
    assert {t["track_id"] for t in env.consume(contracts.TRACKS_TOPIC)} == {track_id}
    assert resolve(env).selected == 0 and env.counts()["GET /v1/search"] == 3


@pytest.mark.parametrize("fault", [{"kind": "429", "retry_after": 7200}, {"kind": "quota"}])
def test_a_long_429_stops_the_run_without_sleeping_and_keeps_the_backlog(env, monkeypatch, fault):
    ana = env.user_ids[0]
    keys = queue(env, ana, listened_pairs(env, ana, 8))
    search = UserSession.search_track
    calls = []

    def search_then_limited(self, artist, track, *args, **kwargs):
        calls.append(track)
        if len(calls) == 4:  # Spotify starts refusing the app after three searches
            env.control("fault", path="/v1/search", **fault)
        return search(self, artist, track, *args, **kwargs)

    monkeypatch.setattr(UserSession, "search_track", search_then_limited)
    started = time.monotonic()
    result = resolve(env)
    assert time.monotonic() - started < 30  # no waiting out a two-hour Retry-After
    assert (result.resolved, result.failed) == (3, 1)
    assert ("429 Retry-After 7200s" if fault["kind"] == "429" else "QUOTA_EXCEEDED") in result.stopped
    got = rows(env)
    assert [got[k][0] for k in keys] == ["resolved"] * 3 + ["pending"] * 5  # what was found before is kept
    assert got[keys[3]][2] == 0 and "RateLimited" in got[keys[3]][3]  # noted, not counted against the row
    assert len(env.consume(contracts.TRACKS_TOPIC)) == 3

    # the next run carries on where this one stopped
    result = resolve(env)
    assert (result.searched, result.resolved, result.stopped) == (5, 5, None)
    assert env.counts()["GET /v1/search"] == 9  # each once, plus the one refused


def test_revoked_token_marks_its_owner_and_the_next_run_borrows_another(env):
    ana, marcus = env.user_ids[0], env.user_ids[1]
    keys = queue(env, ana, listened_pairs(env, ana, 3))
    env.control("fault", kind="invalid_grant", user_id=ana)

    result = resolve(env)
    assert result.token_user == ana and "NeedsReauth" in result.stopped and result.searched == 1
    assert env.sql("select status from app.users where user_id = %s", (ana,))[0][0] == "needs_reauth"
    assert {rows(env)[k][0] for k in keys} == {"pending"}

    result = resolve(env)
    assert (result.token_user, result.resolved, result.stopped) == (marcus, 3, None)


def test_5xx_counts_an_attempt_and_max_attempts_gives_up(env):
    yuki = env.user_ids[2]
    (first, _), (second, second_id) = listened_pairs(env, yuki, 2).items()
    key, = queue(env, yuki, [first])

    def failing_run():
        env.control("fault", kind="5xx", status=502, path="/v1/search", count=env.cfg.policy.max_attempts)
        result = resolve(env)
        assert "SpotifyUnavailable" in result.stopped and (result.searched, result.resolved) == (1, 0)

    failing_run()  # Spotify failed after the usual retries: one attempt counted, the row waits
    assert rows(env)[key][:3] == ("pending", None, 1)
    env.sql("update app.track_resolutions set attempts = %s where name_key = %s",
            (track_resolution.MAX_ATTEMPTS - 1, key))
    failing_run()  # the last attempt: given up
    status, track_id, attempts, error = rows(env)[key]
    assert (status, track_id, attempts) == ("not_found", None, track_resolution.MAX_ATTEMPTS) and "502" in error

    other, = queue(env, yuki, [second])  # the backlog moves on past the given-up row
    assert resolve(env).resolved == 1 and rows(env)[other][:2] == ("resolved", second_id)
    assert rows(env)[key][0] == "not_found"


def test_nothing_is_marked_unless_kafka_acknowledged(env):
    marcus = env.user_ids[1]
    keys = queue(env, marcus, listened_pairs(env, marcus, 3))
    # The tracks topic is missing (auto-create is off): those messages are never acknowledged.
    broken = {**env.topics, contracts.TRACKS_TOPIC: env.topics[contracts.TRACKS_TOPIC] + "-missing"}
    cfg = replace(env.cfg, topics=broken, kafka_config={**env.cfg.kafka_config, "message.timeout.ms": 3000})
    with pytest.raises(DeliveryFailed):
        resolve(env, cfg=cfg)
    assert {rows(env)[k][:3] for k in keys} == {("pending", None, 0)}

    # Airflow's retry does the same slice again, and this time it lands.
    assert resolve(env).resolved == 3
    assert {rows(env)[k][0] for k in keys} == {"resolved"}
