"""The error policy, rate limiter and look-up de-duplication, without any service."""

import threading
import time

import pytest
import requests
from spotipy.exceptions import SpotifyException, SpotifyOauthError

from weekly_wrapped.ingest import poll as ingest
from weekly_wrapped.ingest import store
from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.spotify.client import CallPolicy, RateLimiter, UserSession

APP = spotify.SpotifyApp("id", "secret", "http://127.0.0.1:9/v1/", "http://127.0.0.1:9")


def session(**overrides):
    sleeps = []
    return UserSession(APP, CallPolicy(**overrides), "refresh", RateLimiter(0), sleep=sleeps.append), sleeps


def failing(*errors, result="done"):
    """A call that raises the given errors in turn, then returns `result`."""
    calls = []

    def fn(sp):
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result
    return fn, calls


def http(status, retry_after=None, reason=None):
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return SpotifyException(status, -1, "url", reason=reason, headers=headers)


def test_5xx_and_network_errors_back_off_then_succeed():
    s, sleeps = session(backoff_s=1.0)
    fn, calls = failing(http(503), requests.ConnectionError(), http(502))
    assert s.call(fn) == "done" and len(calls) == 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_5xx_gives_up_after_max_attempts():
    s, sleeps = session(max_attempts=3, backoff_s=0.5)
    fn, calls = failing(*[http(500)] * 5)
    with pytest.raises(spotify.SpotifyUnavailable, match="500 after 3 attempts"):
        s.call(fn)
    assert len(calls) == 3 and sleeps == [0.5, 1.0]


def test_short_429_pauses_the_shared_limiter_and_retries():
    s, sleeps = session()
    s.limiter = RateLimiter(1000)
    fn, calls = failing(http(429, retry_after=1))
    started = time.monotonic()
    assert s.call(fn) == "done"
    assert time.monotonic() - started >= 0.95 and sleeps == []  # waited in the limiter, for everyone


def test_long_429_and_quota_raise_rate_limited_with_retry_at():
    s, _ = session(short_retry_after_s=30, quota_retry_s=3600)
    with pytest.raises(spotify.RateLimited) as err:
        s.call(failing(http(429, retry_after=7200))[0])
    assert 7100 < err.value.retry_at.timestamp() - time.time() <= 7200
    with pytest.raises(spotify.RateLimited, match="QUOTA_EXCEEDED") as err:
        s.call(failing(http(429, reason="QUOTA_EXCEEDED"))[0])
    assert 3500 < err.value.retry_at.timestamp() - time.time() <= 3600
    with pytest.raises(spotify.RateLimited) as err:
        s.call(failing(http(429, retry_after=120, reason="QUOTA_EXCEEDED"))[0])
    assert err.value.retry_at.timestamp() - time.time() <= 120


def test_invalid_grant_means_reauth_and_4xx_is_not_retried():
    s, sleeps = session()
    with pytest.raises(spotify.NeedsReauth):
        s.call(failing(SpotifyOauthError("x", error="invalid_grant", error_description="Refresh token revoked"))[0])
    fn, calls = failing(http(403))
    with pytest.raises(SpotifyException):
        s.call(fn)
    assert len(calls) == 1 and sleeps == []


def test_rate_limiter_holds_the_rate_across_threads():
    limiter = RateLimiter(50, burst=5)
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(10)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 40 permits at 50/s with a burst of 5: at least 35 / 50 s
    assert time.monotonic() - started >= 0.68


def test_entity_looked_up_once_across_threads():
    cache = store.EntityCache("")
    calls = []

    def fetch():
        calls.append(1)
        time.sleep(0.05)
        return {"id": "a"}

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.fetch_once("t", "a", fetch))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [{"id": "a"}] * 8


def test_batches_and_labels():
    assert ingest.batches(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert ingest.batches([], 10) == []
    label = ingest.summary_label([ingest.UserOutcome("ana", "ok", plays=12),
                                  ingest.UserOutcome("yuki", "rate_limited")])
    assert label == "ana ok 12, yuki rate-limited"
    assert len(ingest.summary_label([ingest.UserOutcome(f"user-{i}", "ok") for i in range(100)])) == 200


def test_plan_batches_give_every_batch_the_apps_whole_budget_which_they_share_through_postgres():
    planned = ingest.plan_batches(list("abcde"), batch_size=2, app_requests_per_second=12, parallel_batches=2)
    assert [b["user_ids"] for b in planned] == [["a", "b"], ["c", "d"], ["e"]]
    assert {b["requests_per_second"] for b in planned} == {12.0}  # one shared budget (ingest.budget), no fixed shares


def test_count_outcomes_over_all_batches():
    results = [[ingest.UserOutcome("a", "ok", plays=3).as_dict(), ingest.UserOutcome("b", "failed").as_dict()],
               [ingest.UserOutcome("c", "ok", plays=4).as_dict()]]
    assert ingest.count_outcomes(results) == {"plays": 7, "ok": 2, "failed": 1}
