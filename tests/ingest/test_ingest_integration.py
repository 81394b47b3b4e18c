"""Ingestion on the real stack: real Kafka, real Postgres, the fake Spotify through real spotipy."""

import logging
import time
from collections import Counter

import pytest

from wrapped_dev import demo_users
from weekly_wrapped import contracts
from weekly_wrapped.ingest import poll as ingest
from weekly_wrapped.users import accounts as users
from wrapped_dev.fakes.spotify_server import parse_instant

# The fake's frozen clock (conftest's FROZEN_NOW).
NOW = parse_instant("2026-11-20T18:30:00Z")
HOUR = 3_600_000


def test_first_poll_fills_all_four_streams_and_moves_the_cursor(ingest_env):
    env = ingest_env
    outcomes = env.run()
    assert {o.outcome for o in outcomes.values()} == {"ok"}
    plays = env.consume(contracts.PLAYS_TOPIC)
    assert len(plays) == sum(o.plays for o in outcomes.values()) == 150  # the last 50 each
    assert len(set(env.natural_keys(plays))) == 150
    assert all(p["source"] == "api" and p["schema_version"] == 1 for p in plays)
    for uid in env.user_ids:
        mine = [p["played_at"] for p in plays if p["user_id"] == uid]
        assert env.cursor(uid) == max(mine) <= NOW
    # metadata: every referenced entity once; artists completed by one look-up each
    tracks = env.consume(contracts.TRACKS_TOPIC)
    artists = env.consume(contracts.ARTISTS_TOPIC)
    albums = env.consume(contracts.ALBUMS_TOPIC)
    assert {p["track_id"] for p in plays} == {t["track_id"] for t in tracks}
    # (two users who share a new track in one run may both produce it: the raw upsert keeps one)
    assert {a for t in tracks for a in t["artist_ids"]} <= {a["artist_id"] for a in artists}
    assert {t["album_id"] for t in tracks} == {a["album_id"] for a in albums}
    assert all(a["image_url"] and a["genres"] is None and a["popularity"] is None for a in artists)
    counts = env.counts()
    assert counts.get("GET /v1/artists/{id}") == len({a["artist_id"] for a in artists})  # once per entity
    assert "GET /v1/tracks/{id}" not in counts and "GET /v1/albums/{id}" not in counts
    assert env.sql("select count(*) from app.ingest_outcomes where user_id = any(%s) and outcome = 'ok'",
                   (env.user_ids,))[0][0] == 3
    # no cursor before: nothing was promised, so no gap
    assert env.sql("select count(*) from app.ingest_gaps where user_id = any(%s)", (env.user_ids,))[0][0] == 0


def test_overlapping_polls_give_each_play_once(ingest_env):
    env = ingest_env
    env.run()
    first_cursor = {u: env.cursor(u) for u in env.user_ids}
    artist_lookups = env.counts()["GET /v1/artists/{id}"]

    env.control("clock", advance_seconds=3600)
    env.run()
    # A retry after a crash re-polls an overlapping window: rewind one user's cursor an hour.
    ana = env.user_ids[0]
    env.set_cursor(ana, env.cursor(ana) - HOUR)
    env.control("clock", advance_seconds=600)
    outcomes = env.run()
    assert {o.outcome for o in outcomes.values()} == {"ok"}

    plays = env.consume(contracts.PLAYS_TOPIC)
    keys = Counter(env.natural_keys(plays))
    # Without the rewind no play is ever produced twice ...
    others = [k for k in keys if k[0] != ana]
    assert all(keys[k] == 1 for k in others)
    # ... and with it, the repeats are the same natural key, so the raw upsert keeps one row.
    now = NOW + HOUR + 600_000
    for uid in env.user_ids:
        got = {k for k in keys if k[0] == uid}
        # exactly the plays the listener made from the oldest of the first 50 up to now
        oldest_first = min(k[1] for k in got)
        assert got == env.truth(uid, oldest_first - 1, now)
        assert env.cursor(uid) == max(k[1] for k in got) >= first_cursor[uid]
    # metadata is not fetched again for entities already produced
    new_artists = {a["artist_id"] for a in env.consume(contracts.ARTISTS_TOPIC)}
    assert env.counts()["GET /v1/artists/{id}"] == len(new_artists) >= artist_lookups


def test_cursor_does_not_move_when_kafka_does_not_acknowledge(ingest_env):
    env = ingest_env
    ana = env.user_ids[0]
    # A dead broker: nothing is acknowledged, the batch must fail and keep the cursor.
    dead = {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 3000}
    outcomes = env.run([ana], kafka_config=dead)
    assert outcomes[ana].outcome == "failed" and outcomes[ana].delivery_failed
    assert env.cursor(ana) is None
    with pytest.raises(ingest.IngestFailed):
        ingest.raise_for_failures(list(outcomes.values()))

    # Half acknowledged: the metadata topics exist, the plays topic does not (auto-create is off).
    env.run([ana])  # a first good run, so there is a cursor to protect
    cursor = env.cursor(ana)
    env.control("clock", advance_seconds=2 * 3600)
    env.control("burst", user_id=ana, count=5)  # new plays for sure, whatever the listener did
    broken = {**env.topics, contracts.PLAYS_TOPIC: env.topics[contracts.PLAYS_TOPIC] + "-missing"}
    outcomes = env.run([ana], topics=broken, kafka_config={**env.cfg.kafka_config, "message.timeout.ms": 3000})
    assert outcomes[ana].outcome == "failed" and outcomes[ana].delivery_failed
    assert env.cursor(ana) == cursor

    # The retry starts from the same cursor and delivers everything since.
    outcomes = env.run([ana])
    assert outcomes[ana].outcome == "ok" and outcomes[ana].plays > 0
    keys = set(env.natural_keys(env.consume(contracts.PLAYS_TOPIC)))
    assert env.served(ana, cursor, NOW + 2 * HOUR) <= keys
    # A busy listener's two hours and the burst can be more than Spotify's window of 50
    # (about 1 seed in 250): the oldest plays are then out of reach, and the poll says so.
    out_of_reach = env.truth(ana, cursor, NOW + 2 * HOUR) - keys
    assert not out_of_reach or outcomes[ana].gap
    assert env.cursor(ana) > cursor


def test_short_429_is_waited_out(ingest_env):
    env = ingest_env
    ana, marcus, yuki = env.user_ids
    env.control("fault", kind="429", user_id=ana, retry_after=1, path="/v1/me/player/recently-played")
    started = time.monotonic()
    outcomes = env.run()
    assert time.monotonic() - started >= 1
    assert [outcomes[u].outcome for u in env.user_ids] == ["ok", "ok", "ok"]
    assert outcomes[ana].plays == 50


def test_long_429_skips_the_user_until_retry_at(ingest_env):
    env = ingest_env
    ana, marcus, yuki = env.user_ids
    env.control("fault", kind="429", user_id=ana, retry_after=7200)
    started = time.monotonic()
    outcomes = env.run()
    assert time.monotonic() - started < 30  # nobody slept for two hours
    assert outcomes[ana].outcome == "rate_limited"
    assert 7000 < (outcomes[ana].retry_at.timestamp() - time.time()) <= 7200
    assert env.cursor(ana) is None
    assert outcomes[marcus].outcome == outcomes[yuki].outcome == "ok"
    row = env.sql("select outcome, retry_at is not null from app.ingest_outcomes where user_id = %s "
                  "order by id desc limit 1", (ana,))
    assert row == [("rate_limited", True)]
    # The next run does not even ask Spotify for that user.
    polls = env.counts().get(f"GET /v1/me/player/recently-played {ana}", 0)
    again = env.run()
    assert again[ana].outcome == "rate_limited" and again[marcus].outcome == "ok"
    assert env.counts().get(f"GET /v1/me/player/recently-played {ana}", 0) == polls


def test_quota_exceeded_skips_the_user(ingest_env):
    env = ingest_env
    ana, marcus, yuki = env.user_ids
    env.control("fault", kind="quota", user_id=marcus)
    outcomes = env.run()
    assert outcomes[marcus].outcome == "rate_limited" and "QUOTA_EXCEEDED" in outcomes[marcus].reason
    assert outcomes[marcus].retry_at.timestamp() - time.time() > 3000
    assert outcomes[ana].outcome == outcomes[yuki].outcome == "ok"


def test_5xx_is_retried_with_bounded_backoff(ingest_env):
    env = ingest_env
    ana, marcus, yuki = env.user_ids
    env.control("fault", kind="5xx", user_id=ana, status=503, count=2)      # recovers
    env.control("fault", kind="5xx", user_id=yuki, status=502, count=100)   # never recovers
    outcomes = env.run()
    assert outcomes[ana].outcome == "ok" and outcomes[ana].plays == 50
    assert outcomes[marcus].outcome == "ok"
    assert outcomes[yuki].outcome == "failed" and "502" in outcomes[yuki].reason
    assert env.counts()[f"GET /v1/me/player/recently-played {yuki}"] == env.cfg.policy.max_attempts
    assert env.cursor(yuki) is None and env.cursor(ana) is not None
    with pytest.raises(ingest.IngestFailed, match=yuki):
        ingest.raise_for_failures(list(outcomes.values()))


def test_expired_access_token_is_refreshed(ingest_env):
    env = ingest_env
    ana = env.user_ids[0]
    tokens = env.counts().get("POST /api/token", 0)
    env.control("fault", kind="expire_token", user_id=ana)
    outcomes = env.run()
    assert {o.outcome for o in outcomes.values()} == {"ok"}
    assert env.counts()["POST /api/token"] == tokens + 3 + 1  # one refresh per user, one more after the 401


def test_invalid_grant_marks_needs_reauth_until_reconnected(ingest_env, settings):
    env = ingest_env
    ana, marcus, yuki = env.user_ids
    env.control("fault", kind="invalid_grant", user_id=yuki)
    outcomes = env.run()
    assert outcomes[yuki].outcome == "needs_reauth"
    assert outcomes[ana].outcome == outcomes[marcus].outcome == "ok"
    assert users.get_user(env.dsn, yuki).status == "needs_reauth"
    assert yuki not in users.list_active_users(env.dsn)
    # reconnecting makes them active again, and the next run polls them
    demo_users.onboard_demo_users(settings, dsn=env.dsn, app=env.app, user_ids=[yuki])
    assert users.get_user(env.dsn, yuki).status == "active"
    assert env.run([yuki])[yuki].outcome == "ok"


def test_burst_of_more_than_50_plays_records_a_gap(ingest_env):
    env = ingest_env
    ana, marcus, yuki = env.user_ids
    env.run()
    cursor = env.cursor(marcus)
    # An hour later, 80 plays in the last 41 minutes: all newer than the cursor, more than a window.
    env.control("clock", advance_seconds=3600)
    env.control("burst", user_id=marcus, count=80)
    outcomes = env.run()
    assert outcomes[marcus].outcome == "ok" and outcomes[marcus].plays == 50
    assert outcomes[marcus].gap and outcomes[marcus].gap[0] == cursor
    gaps = env.sql("select (extract(epoch from gap_from) * 1000)::bigint, (extract(epoch from gap_to) * 1000)::bigint "
                   "from app.ingest_gaps where user_id = %s", (marcus,))
    assert gaps == [outcomes[marcus].gap]
    assert env.sql("select count(*) from app.ingest_gaps where user_id = any(%s)", ([ana, yuki],))[0][0] == 0


def test_tokens_never_reach_logs_or_outcomes(ingest_env, caplog):
    env = ingest_env
    env.control("fault", kind="expire_token", user_id=env.user_ids[0])   # a refresh after a 401
    env.control("fault", kind="5xx", user_id=env.user_ids[1], count=1)   # an error message
    env.control("fault", kind="invalid_grant", user_id=env.user_ids[2])  # an OAuth error
    with caplog.at_level(logging.DEBUG):
        outcomes = env.run()
    assert [outcomes[u].outcome for u in env.user_ids] == ["ok", "ok", "needs_reauth"]
    text = caplog.text + repr([o.as_dict() for o in outcomes.values()])
    assert any("HTTP Error" in r.getMessage() for r in caplog.records)  # errors were logged ...
    assert "fake-at-" not in text and "fake-rt-" not in text and "Bearer " not in text  # ... tokens not
    stored = env.sql("select refresh_token_encrypted from app.users where user_id = %s", (env.user_ids[0],))[0][0]
    assert not stored.startswith("fake-rt-")  # encrypted at rest


def test_many_users_share_one_rate_limit(make_ingest_env):
    """40 users, 4 threads, one 40 requests/s budget: everyone ingested, the budget held."""
    env = make_ingest_env(n_users=40, max_workers=4, requests_per_second=40)
    started = time.monotonic()
    outcomes = env.run()
    elapsed = time.monotonic() - started
    assert len(outcomes) == 40 and {o.outcome for o in outcomes.values()} == {"ok"}
    assert sum(o.plays for o in outcomes.values()) == 40 * 50
    api_calls = sum(v for k, v in env.counts().items() if k.startswith("GET /v1/") and k.count(" ") == 1)
    assert api_calls >= 40
    # a token bucket of 40/s with a burst of 40: never faster than that
    assert api_calls <= 40 + 40 * elapsed, (api_calls, elapsed)
