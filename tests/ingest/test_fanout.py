"""Fan-out under an app-wide rate limit: the real `spotify_ingest` DAG polls 20 listeners of a
private fake Spotify that answers 429 past 60 requests a second (rolling 2 s window; the app asks
for 50, a little below, as one should with Spotify: requests arrive with jitter), and the
batches share one request budget through Postgres. `bench/ingest_fanout.py` is the 1,000-listener
version on the stack's Airflow."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace

from dag_runs import run_dag_test

from tests.support.postgres import private_database, sql
from weekly_wrapped.ingest.budget import SharedRateLimiter
from weekly_wrapped.users.leaving import delete_user_data
from wrapped_dev.demo_users import onboard_demo_users
from wrapped_dev.fakes.spotify_server import FakeSpotify, make_server
from wrapped_dev.stack.env import connections, variables

LISTENERS = 20
RATE = 50.0
FAKE_LIMIT = 60.0


def test_one_run_polls_every_listener_in_mapped_batches_without_going_over_the_apps_limit(
        postgres, kafka, settings, airflow_test_env):
    # The demo's catalogue (seed 7): the tracks this run sends to the shared topics are the demo's own.
    fake = FakeSpotify(seed=7, n_users=LISTENERS, user_prefix=f"t{uuid.uuid4().hex[:8]}-",
                       rate_limit=FAKE_LIMIT, rate_window_s=2.0)
    server = make_server(0, fake=fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with private_database(postgres.dsn, "wrapped_fanout_test", schema=True) as (name, dsn):
            private = replace(settings, pg_database=name, spotify_api_base=f"{base}/v1/", spotify_accounts_base=base,
                              spotify_rps=RATE, musicbrainz_genres=False)
            fake.set_rate_limit(None)  # onboarding (/me) is not the run
            user_ids = onboard_demo_users(private, dsn=dsn, app=private.spotify_app)
            fake.set_rate_limit(FAKE_LIMIT, 2.0)
            before = fake.counts["api requests"]
            env = {**airflow_test_env, **connections(private), **variables(private),
                   "AIRFLOW_VAR_WRAPPED_INGEST_BATCH_SIZE": "5"}
            started = time.monotonic()
            output = run_dag_test(env, "spotify_ingest", {"metadata_backfill_per_run": 0,
                                                          "track_resolution_per_run": 0})
            took = time.monotonic() - started

            assert f"{LISTENERS} active users in 4 batches, 4 at once, sharing 50 requests/s" in output
            mapped = sql(dsn, "select count(distinct run_id), count(*) filter (where outcome = 'ok') "
                              "from app.ingest_outcomes")
            assert mapped == [(1, LISTENERS)]
            assert sql(dsn, "select count(*) from app.ingest_cursors where after_ms is not null") == [(LISTENERS,)]
            requests_made = fake.counts["api requests"] - before
            # 20 recently-played plus the catalogue's look-ups; without the shared budget's pacing
            # they come in a few seconds and the fake answers 429.
            assert requests_made > 2 * LISTENERS and fake.counts.get("api 429 rate limit", 0) == 0
            assert took >= requests_made / RATE
    finally:
        server.shutdown()
        server.server_close()
        # The plays went to the shared topics: the product's own deletion keeps them out of the warehouse.
        for user_id in fake.users:
            delete_user_data(postgres.dsn, user_id)


def test_processes_share_one_budget(postgres):
    """Two limiters (two connections, as two mapped tasks have) together stay at the rate, and
    neither is held to a fixed half of it while the other is idle."""
    with private_database(postgres.dsn, "wrapped_budget_test", schema=True) as (_, dsn):
        first, second = (SharedRateLimiter(dsn, "app", 40.0) for _ in range(2))

        def take(limiter, n):
            for _ in range(n):
                limiter.acquire()

        started = time.monotonic()
        take(first, 40)  # alone: the whole rate
        alone = time.monotonic() - started
        started = time.monotonic()
        threads = [threading.Thread(target=take, args=(limiter, 40)) for limiter in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        together = time.monotonic() - started
        first.pause(1.0)  # a 429's Retry-After holds back every process
        started = time.monotonic()
        second.acquire()
        paused = time.monotonic() - started
        first.close(), second.close()
    assert 0.9 <= alone <= 1.5
    assert 1.9 <= together <= 2.6
    assert paused >= 0.9
