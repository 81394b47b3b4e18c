"""Hourly ingestion: each active user's new plays (and the metadata they need) into Kafka.

Per user: read the cursor (`app.ingest_cursors.after_ms`, the newest `played_at`
Kafka acknowledged), poll `recently-played` after it following `next`, build the
four streams' messages (`spotify.payloads`), look up entities the payload left
incomplete (cache-first, one id at a time, once), produce, flush, and only when
every message was acknowledged move the cursor, in the same transaction that
records the gap (if any), the entities now known and the outcome.

Errors are per user (the policy itself is `spotify.client.UserSession`): a long 429 or
QUOTA_EXCEEDED skips the user until `retry_at`; `invalid_grant`, or a stored token none of the
configured keys decrypts, marks them `needs_reauth`;
5xx/timeouts that outlast the retries fail the user. Users run in a small
thread pool, so one user never stops another; every request takes a slot of the app's
request budget, shared through Postgres by all the batches polling at once (`ingest.budget`).
A Kafka delivery failure is reported as `failed` and the caller fails the task, so
Airflow retries from the same cursor.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping

from weekly_wrapped import contracts
from weekly_wrapped.ingest import store
from weekly_wrapped.ingest.budget import SharedRateLimiter
from weekly_wrapped.ingest.producer import DeliveryFailed, StreamProducer
from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.spotify import payloads
from weekly_wrapped.spotify.client import (CallPolicy, NeedsReauth, RateLimited, RateLimiter, SpotifyApp,
                                            UserSession)
from weekly_wrapped.users import accounts as users
from weekly_wrapped.users.tokens import TokenUndecryptable

log = logging.getLogger(__name__)

# Metadata first, so a consumer that loads plays sees their track soon after, never long before.
PRODUCE_ORDER = (contracts.ARTISTS_TOPIC, contracts.ALBUMS_TOPIC, contracts.TRACKS_TOPIC)


@dataclass(frozen=True)
class IngestConfig:
    dsn: str = field(repr=False)  # holds the warehouse password
    kafka_config: Mapping[str, Any] = field(repr=False)  # may hold SASL credentials
    app: SpotifyApp
    token_secret: str = field(repr=False)
    topics: Mapping[str, str] = field(default_factory=dict)  # contract topic -> real topic (tests)
    source: str = "api"
    max_workers: int = 4
    requests_per_second: float = 10.0   # the app's whole budget, shared by every process polling
    policy: CallPolicy = field(default_factory=CallPolicy)
    flush_timeout_s: float = 60.0


@dataclass
class UserOutcome:
    user_id: str
    outcome: str  # ok / rate_limited / needs_reauth / failed
    plays: int = 0
    reason: str | None = None
    retry_at: datetime | None = None
    gap: tuple[int, int] | None = None
    cursor: int | None = None
    delivery_failed: bool = False

    def as_dict(self) -> dict:
        return {"user_id": self.user_id, "outcome": self.outcome, "plays": self.plays, "reason": self.reason,
                "retry_at": self.retry_at.isoformat() if self.retry_at else None, "gap": list(self.gap) if self.gap else None,
                "cursor": self.cursor}


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- one user, many users ------------------------------------------------------------------------

def complete_metadata(session: UserSession, cache: store.EntityCache, msgs: payloads.PollMessages,
                       now_ms: int) -> dict[str, list[str]]:
    """Drop entities produced before; fill in the ones the payload left incomplete. Returns what to produce."""
    builders = {contracts.TRACKS_TOPIC: payloads.track_message, contracts.ALBUMS_TOPIC: payloads.album_message,
                contracts.ARTISTS_TOPIC: payloads.artist_message}
    to_produce: dict[str, list[str]] = {}
    for topic in PRODUCE_ORDER:
        entities = msgs.entities(topic)
        for known in cache.known(topic, list(entities)):
            del entities[known]
        for entity_id, message in list(entities.items()):
            if payloads.missing_fields(topic, message):
                full = cache.fetch_once(topic, entity_id, lambda t=topic, i=entity_id: session.entity(t, i))
                if full:
                    entities[entity_id] = builders[topic](full, now_ms)
        to_produce[topic] = list(entities)
    return to_produce


def ingest_user(cfg: IngestConfig, user_id: str, *, limiter: RateLimiter, cache: store.EntityCache,
                run_id: str | None = None, sleep: Callable[[float], None] = time.sleep) -> UserOutcome:
    """Ingest one user; never raises for Spotify or Kafka trouble (it becomes the outcome)."""
    try:
        retry_at = store.pending_retry_at(cfg.dsn, user_id)
        if retry_at:
            o = UserOutcome(user_id, "rate_limited", reason="still rate limited from an earlier run", retry_at=retry_at)
            store.record_outcome(cfg.dsn, run_id, o)
            return o
        try:
            refresh_token = users.refresh_token_of(cfg.dsn, cfg.token_secret, user_id)
        except TokenUndecryptable as exc:  # e.g. a key dropped too early: only the user can fix it
            return _needs_reauth(cfg, run_id, user_id, str(exc))
        if not refresh_token:
            return _needs_reauth(cfg, run_id, user_id, "no refresh token stored")
        cursor = store.read_cursor(cfg.dsn, user_id)
        session = UserSession(cfg.app, cfg.policy, refresh_token, limiter, sleep)
        items = session.recently_played(cursor)
        now_ms = _now_ms()
        msgs = payloads.messages_from_items(user_id, items, after_ms=cursor, source=cfg.source, now_ms=now_ms)
        gap = payloads.detect_gap(cursor, msgs.plays)
        produced = complete_metadata(session, cache, msgs, now_ms)

        producer = StreamProducer(cfg.kafka_config, cfg.topics)
        for topic in PRODUCE_ORDER:
            entities = msgs.entities(topic)
            producer.send_all(((topic, entities[i]) for i in produced[topic]), validated=True)
        producer.send_all(((contracts.PLAYS_TOPIC, p) for p in msgs.plays), validated=True)
        producer.flush(cfg.flush_timeout_s)  # raises DeliveryFailed: then nothing below happens

        new_refresh = spotify.current_refresh_token(session.oauth)
        if new_refresh and new_refresh != refresh_token:
            users.save_refresh_token(cfg.dsn, cfg.token_secret, user_id, new_refresh)
        new_cursor = payloads.newest_played_at(msgs.plays)
        o = UserOutcome(user_id, "ok", plays=len(msgs.plays), gap=gap, cursor=new_cursor or cursor,
                        reason="possible gap: a full window of new plays" if gap else None)
        store.commit_success(cfg.dsn, run_id, o, new_cursor, produced)
        log.info("user %s: %d plays, cursor %s -> %s%s", user_id, o.plays, cursor, o.cursor,
                 f", gap {gap}" if gap else "")
        return o
    except RateLimited as exc:
        o = UserOutcome(user_id, "rate_limited", reason=str(exc), retry_at=exc.retry_at)
    except NeedsReauth as exc:
        o = UserOutcome(user_id, "needs_reauth", reason=str(exc))
        _safely(users.mark_needs_reauth, cfg.dsn, user_id, o.reason)
    except DeliveryFailed as exc:
        o = UserOutcome(user_id, "failed", reason=f"kafka: {exc}", delivery_failed=True)
    except Exception as exc:  # one user's trouble must not stop the others
        o = UserOutcome(user_id, "failed", reason=f"{type(exc).__name__}: {exc}")
    log.warning("user %s: %s (%s)", user_id, o.outcome, o.reason)
    _safely(store.record_outcome, cfg.dsn, run_id, o)
    return o


def _needs_reauth(cfg: IngestConfig, run_id: str | None, user_id: str, reason: str) -> UserOutcome:
    o = UserOutcome(user_id, "needs_reauth", reason=reason)
    users.mark_needs_reauth(cfg.dsn, user_id, reason)
    store.record_outcome(cfg.dsn, run_id, o)
    log.warning("user %s: needs_reauth (%s)", user_id, reason)
    return o


def _safely(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # the outcome log is best effort; the task result still carries it
        log.exception("could not record %s", getattr(fn, "__name__", fn))


def ingest_users(cfg: IngestConfig, user_ids: list[str], run_id: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> list[UserOutcome]:
    """Ingest many users with bounded concurrency under the app's shared request budget; outcomes in input order."""
    # One budget per Spotify app and API (a private fake in a test has its own).
    limiter = SharedRateLimiter(cfg.dsn, f"{cfg.app.client_id} {cfg.app.api}", cfg.requests_per_second)
    cache = store.EntityCache(cfg.dsn)
    try:
        with ThreadPoolExecutor(max_workers=max(1, cfg.max_workers), thread_name_prefix="ingest") as pool:
            futures = [pool.submit(ingest_user, cfg, u, limiter=limiter, cache=cache, run_id=run_id, sleep=sleep)
                       for u in user_ids]
            return [f.result() for f in futures]
    finally:
        limiter.close()
        cache.close()


class IngestFailed(RuntimeError):
    """Raised after all users ran, when some failed in a way a retry can fix (Kafka, 5xx)."""


def raise_for_failures(outcomes: list[UserOutcome]) -> None:
    failed = [o for o in outcomes if o.outcome == "failed"]
    if failed:
        raise IngestFailed("; ".join(f"{o.user_id}: {o.reason}" for o in failed)[:2000])


def batches(user_ids: list[str], size: int) -> list[list[str]]:
    """Split users into batches of at most `size`, for Airflow's dynamic task mapping."""
    size = max(1, size)
    return [user_ids[i:i + size] for i in range(0, len(user_ids), size)]


def plan_batches(user_ids: list[str], batch_size: int, app_requests_per_second: float,
                 parallel_batches: int) -> list[dict]:
    """Mapped-task inputs: batches of users, each with the app's request budget. Spotify limits the
    app, not the user: the batches running side by side share that one budget through Postgres
    (`ingest.budget`), so no batch gets a fixed share that sits idle while it starts or after it ends."""
    planned = batches(user_ids, batch_size)
    print(f"{len(user_ids)} active users in {len(planned)} batches, {min(parallel_batches, len(planned))} at "
          f"once, sharing {app_requests_per_second:g} requests/s")
    return [{"user_ids": b, "requests_per_second": app_requests_per_second} for b in planned]


def report(outcomes: list[UserOutcome]) -> str:
    """One line per user for the task log."""
    return "\n".join(
        f"{o.user_id:30} {o.outcome:13} plays={o.plays:<4} {o.reason or ''}"
        f"{' retry_at=' + o.retry_at.isoformat() if o.retry_at else ''}" for o in outcomes)


def count_outcomes(results: list[list[dict]]) -> dict[str, int]:
    """Plays and users by outcome over all batches of a run (`UserOutcome.as_dict()` lists)."""
    counts: dict[str, int] = {"plays": 0}
    for batch in results:
        for o in batch:
            counts[o["outcome"]] = counts.get(o["outcome"], 0) + 1
            counts["plays"] += o["plays"]
    return counts


def summary_label(outcomes: list[UserOutcome], limit: int = 200) -> str:
    """A short per-user result for the mapped task's name in the UI, e.g. 'demo-ana ok 12, demo-yuki 429'."""
    short = {"ok": "ok", "rate_limited": "rate-limited", "needs_reauth": "needs-reauth", "failed": "FAILED"}
    parts = [f"{o.user_id} {short.get(o.outcome, o.outcome)}{f' {o.plays}' if o.outcome == 'ok' else ''}"
             for o in outcomes]
    label = ", ".join(parts)
    return label if len(label) <= limit else label[: limit - 1] + "…"
