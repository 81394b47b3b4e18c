"""Ingestion fixtures: a private fake Spotify, private Kafka topics and private users per test.

Each test gets its own fake Spotify server (in a thread, frozen clock), its own seed (so
its catalogue's entity ids are its own), user ids with a unique prefix, and four Kafka
topics of its own; it cleans up exactly those rows and topics afterwards. So these tests
run next to the demo and the other areas' tests on the one shared stack.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from dataclasses import dataclass, replace

import pytest
import requests

from wrapped_dev import demo_users
from weekly_wrapped import contracts
from weekly_wrapped.ingest import poll as ingest
from weekly_wrapped.ingest import store
from weekly_wrapped.spotify.client import CallPolicy
from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.users import accounts as users
from wrapped_dev.fakes import demo_listener as dl
from wrapped_dev.fakes.spotify_server import FakeSpotify, make_server, parse_instant

from tests.support.kafka import create_topics, delete_topics, read_topic
from tests.support.postgres import sql

FROZEN_NOW = "2026-11-20T18:30:00Z"


@dataclass
class IngestEnv:
    base: str
    app: spotify.SpotifyApp
    fake: FakeSpotify
    cfg: ingest.IngestConfig
    user_ids: list[str]
    topics: dict[str, str]
    bootstrap: str
    dsn: str
    start_ms: int  # the fake's frozen clock at the start of the test

    @staticmethod
    def natural_keys(plays: list[dict]) -> list[tuple]:
        return [(p["user_id"], p["played_at"], p["track_id"]) for p in plays]

    def control(self, action: str, **body) -> dict:
        r = requests.post(f"{self.base}/_control/{action}", json=body, timeout=10)
        r.raise_for_status()
        return r.json()

    def counts(self) -> dict[str, int]:
        return requests.get(f"{self.base}/_control/state", timeout=10).json()["counts"]

    def run(self, user_ids: list[str] | None = None, **overrides) -> dict[str, ingest.UserOutcome]:
        cfg = replace(self.cfg, **overrides) if overrides else self.cfg
        outcomes = ingest.ingest_users(cfg, user_ids or self.user_ids, run_id=f"test-{uuid.uuid4().hex[:6]}")
        return {o.user_id: o for o in outcomes}

    def cursor(self, user_id: str) -> int | None:
        return store.read_cursor(self.dsn, user_id)

    def set_cursor(self, user_id: str, after_ms: int) -> None:
        self.sql("update app.ingest_cursors set after_ms = %s where user_id = %s", (after_ms, user_id))

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        return sql(self.dsn, query, params)

    def consume(self, topic: str) -> list[dict]:
        """Every message on one of this test's topics (contract name), in offset order."""
        return read_topic(self.bootstrap, self.topics[topic])

    def truth(self, user_id: str, after_ms: int, now_ms: int) -> set[tuple]:
        """The natural keys of the plays the fake serves for a user in (after_ms, now_ms]."""
        user = self.fake.users[user_id]
        return {(user_id, p.played_at_ms, p.track_id) for p in dl.plays_between(self.fake.seed, user, after_ms, now_ms)}

    def served(self, user_id: str, after_ms: int, now_ms: int) -> set[tuple]:
        """The natural keys of what Spotify still lists after `after_ms` at `now_ms`: its last 50 plays, bursts too."""
        return {(user_id, p.played_at_ms, p.track_id) for p in self.fake.history(user_id, now_ms)
                if p.played_at_ms > after_ms}


@pytest.fixture
def make_ingest_env(postgres, kafka, settings):
    """A factory: `make_ingest_env(n_users=3, **config overrides)` -> IngestEnv; all cleaned up after the test."""
    kafka_bootstrap = kafka.bootstrap
    cleanups = []

    def make(n_users: int = 3, **overrides) -> IngestEnv:
        # The seed and the user ids decide what each listener played. A failure prints both
        # (captured stdout); WRAPPED_TEST_FAKE="<seed> <prefix>" replays them.
        replay = os.environ.get("WRAPPED_TEST_FAKE", "").split()
        seed = int(replay[0]) if replay else random.randrange(1_000, 10**9)
        prefix = replay[1] if replay else f"t{uuid.uuid4().hex[:8]}-"
        print(f'fake Spotify: WRAPPED_TEST_FAKE="{seed} {prefix}"')
        fake = FakeSpotify(seed=seed, n_users=n_users, now=parse_instant(FROZEN_NOW), user_prefix=prefix)
        server = make_server(0, fake=fake)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        app = spotify.SpotifyApp("demo-client-id", "demo-client-secret", f"{base}/v1/", base)

        topics = {t: f"{prefix}{t}" for t in contracts.TOPICS}
        create_topics(kafka_bootstrap, {name: 1 for name in topics.values()})

        dsn = postgres.dsn
        env = IngestEnv(base, app, fake, None, [], topics, kafka_bootstrap, dsn, parse_instant(FROZEN_NOW))

        def cleanup():
            server.shutdown()
            server.server_close()
            cat = dl.build_catalogue(seed)
            env.sql("delete from app.entity_cache where entity_id = any(%s)",
                    (list(cat.tracks) + list(cat.albums) + list(cat.artists),))
            ids = list(fake.users)
            env.sql("delete from app.metadata_backlog where user_id = any(%s) or track_id = any(%s)",
                    (ids, list(cat.tracks)))
            for table in ("app.ingest_outcomes", "app.ingest_gaps", "app.ingest_cursors", "app.users"):
                env.sql(f"delete from {table} where user_id = any(%s)", (ids,))
            delete_topics(kafka_bootstrap, topics.values())

        cleanups.append(cleanup)
        env.user_ids = demo_users.onboard_demo_users(settings, dsn=dsn, app=app)
        env.cfg = ingest.IngestConfig(
            dsn=dsn, kafka_config={"bootstrap.servers": kafka_bootstrap}, app=app,
            token_secret=settings.token_secret, topics=topics,
            policy=CallPolicy(backoff_s=0.05),
            **{"max_workers": 3, "requests_per_second": 50, "flush_timeout_s": 30, **overrides})
        return env

    yield make
    for cleanup in cleanups:
        cleanup()


@pytest.fixture
def ingest_env(make_ingest_env) -> IngestEnv:
    """Three users (Berlin, New York, Tokyo) on a private fake Spotify, private topics."""
    return make_ingest_env()
