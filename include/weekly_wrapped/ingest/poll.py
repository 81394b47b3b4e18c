"""Hourly ingestion: each active user's new plays (and the metadata they need) into Kafka.

Per user: read the cursor (`app.ingest_cursors.after_ms`, the newest `played_at`
Kafka acknowledged), poll `recently-played` after it following `next`, build the
four streams' messages (`spotify.payloads`), look up entities the payload left
incomplete (cache-first, one id at a time, once), produce, flush, and only when
every message was acknowledged move the cursor, in the same transaction that
records the gap (if any), the entities now known and the outcome.

Errors are per user: 429 with a short Retry-After is waited out; a long one or
QUOTA_EXCEEDED skips the user until `retry_at`; `invalid_grant` marks them
`needs_reauth`; 5xx/timeouts are retried with bounded backoff. Users run in a small
thread pool sharing one client-side rate limiter, so one user never stops another.
A Kafka delivery failure is reported as `failed` and the caller fails the task, so
Airflow retries from the same cursor.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

import requests
from spotipy.exceptions import SpotifyException, SpotifyOauthError

from weekly_wrapped import db
from weekly_wrapped import contracts
from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.users import accounts as users
from weekly_wrapped.ingest.producer import DeliveryFailed, StreamProducer
from weekly_wrapped.spotify import payloads

log = logging.getLogger(__name__)

ENTITY_TYPES = {contracts.TRACKS_TOPIC: "track", contracts.ALBUMS_TOPIC: "album",
                contracts.ARTISTS_TOPIC: "artist"}
# Metadata first, so a consumer that loads plays sees their track soon after, never long before.
PRODUCE_ORDER = (contracts.ARTISTS_TOPIC, contracts.ALBUMS_TOPIC, contracts.TRACKS_TOPIC)


@dataclass(frozen=True)
class IngestConfig:
    dsn: str = field(repr=False)  # holds the warehouse password
    kafka_config: Mapping[str, Any] = field(repr=False)  # may hold SASL credentials
    app: spotify.SpotifyApp
    fernet_key: str = field(repr=False)
    topics: Mapping[str, str] = field(default_factory=dict)  # contract topic -> real topic (tests)
    source: str = "api"
    max_workers: int = 4
    requests_per_second: float = 10.0   # shared by all users of one process
    short_retry_after_s: int = 30       # a longer Retry-After skips the user for this run
    quota_retry_s: int = 3600           # QUOTA_EXCEEDED without Retry-After: try again in an hour
    max_attempts: int = 4               # per request, for 5xx / timeouts / short 429s
    backoff_s: float = 1.0              # 1, 2, 4 s ... between 5xx attempts
    max_pages: int = 20
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


class RateLimited(Exception):
    def __init__(self, reason: str, retry_at: datetime):
        super().__init__(reason)
        self.retry_at = retry_at


class NeedsReauth(Exception):
    pass


class SpotifyUnavailable(Exception):
    pass


class RateLimiter:
    """A token bucket shared by all threads; `pause(s)` holds everyone back (Spotify limits per app)."""

    def __init__(self, per_second: float, burst: int | None = None):
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.capacity = burst or max(1, int(per_second))
        self.tokens = float(self.capacity)
        self.updated = time.monotonic()
        self.paused_until = 0.0
        self.lock = threading.Lock()

    def acquire(self) -> None:
        if not self.interval:
            return
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) / self.interval)
                self.updated = now
                wait = max(self.paused_until - now, 0.0)
                if not wait and self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = wait or (1 - self.tokens) * self.interval
            time.sleep(wait)

    def pause(self, seconds: float) -> None:
        with self.lock:
            self.paused_until = max(self.paused_until, time.monotonic() + seconds)


class EntityCache:
    """Which tracks/albums/artists were already produced (app.entity_cache), plus look-ups in flight.

    The table makes metadata once-per-entity across runs; the in-process part makes it
    once across the threads of this run (the first thread fetches, the others wait).
    """

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.lock = threading.Lock()
        self.fetched: dict[tuple[str, str], dict | None] = {}
        self.in_flight: dict[tuple[str, str], threading.Event] = {}

    def known(self, topic: str, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        with db.transaction(self.dsn) as cur:
            cur.execute("select entity_id from app.entity_cache where entity_type = %s and entity_id = any(%s)",
                        (ENTITY_TYPES[topic], ids))
            found = {r[0] for r in cur.fetchall()}
        return found

    def fetch_once(self, topic: str, entity_id: str, fetch: Callable[[], dict | None]) -> dict | None:
        key = (topic, entity_id)
        while True:
            with self.lock:
                if key in self.fetched:
                    return self.fetched[key]
                event = self.in_flight.get(key)
                if event is None:
                    event = self.in_flight[key] = threading.Event()
                    break
            event.wait(60)
        try:
            result = fetch()
            with self.lock:
                self.fetched[key] = result
            return result
        finally:
            with self.lock:
                self.in_flight.pop(key, None)
            event.set()


# --- talking to Spotify ----------------------------------------------------------------------

class UserSession:
    """One user's spotipy client, with our error policy around every call."""

    def __init__(self, cfg: IngestConfig, refresh_token: str, limiter: RateLimiter,
                 sleep: Callable[[float], None] = time.sleep):
        self.cfg = cfg
        self.oauth = spotify.oauth_for_refresh_token(cfg.app, refresh_token)
        self.sp = spotify.make_client(cfg.app, self.oauth)
        self.limiter = limiter
        self.sleep = sleep
        self.refreshed_after_401 = False

    def call(self, fn: Callable[[spotify.spotipy.Spotify], Any]) -> Any:
        attempt = 0
        while True:
            attempt += 1
            self.limiter.acquire()
            try:
                return fn(self.sp)
            except SpotifyOauthError as exc:
                if exc.error == "invalid_grant":
                    raise NeedsReauth(f"refresh token rejected: {exc.error_description or exc.error}") from None
                if exc.error == "invalid_client":
                    raise  # our app's credentials are wrong: a configuration error, not transient
                problem = f"token endpoint error {exc.error}"
            except SpotifyException as exc:
                if exc.http_status == 401 and not self.refreshed_after_401:
                    # The access token expired (or was revoked) before spotipy's clock says so.
                    self.refreshed_after_401 = True
                    self.limiter.acquire()
                    try:
                        spotify.force_refresh(self.oauth)
                    except SpotifyOauthError as oauth_exc:
                        if oauth_exc.error == "invalid_grant":
                            raise NeedsReauth(f"refresh token rejected: {oauth_exc.error_description}") from None
                        raise
                    continue
                if exc.http_status == 429:
                    header = payloads.retry_after_seconds(exc.headers, default=-1)
                    if exc.reason == "QUOTA_EXCEEDED":
                        retry = header if header >= 0 else self.cfg.quota_retry_s
                        raise RateLimited("QUOTA_EXCEEDED", _utcnow() + timedelta(seconds=max(retry, 1))) from None
                    wait = max(header, 1)  # none or 0: a second
                    if wait > self.cfg.short_retry_after_s or attempt >= self.cfg.max_attempts:
                        raise RateLimited(f"429 Retry-After {wait}s", _utcnow() + timedelta(seconds=wait)) from None
                    # Spotify's limit is per app: hold back every user of this process, then retry.
                    self.limiter.pause(wait)
                    continue
                if exc.http_status >= 500:
                    problem = f"Spotify {exc.http_status}"
                else:
                    raise
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"network error {type(exc).__name__}"
            if attempt >= self.cfg.max_attempts:
                raise SpotifyUnavailable(f"{problem} after {attempt} attempts")
            self.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))

    def recently_played(self, after_ms: int | None) -> list[dict]:
        """Every item after the cursor, following `next` while it moves forward."""
        if after_ms is None:
            page = self.call(lambda sp: sp.current_user_recently_played(limit=payloads.HISTORY_WINDOW))
        else:
            page = self.call(lambda sp: sp.current_user_recently_played(limit=payloads.HISTORY_WINDOW,
                                                                       after=after_ms))
        items = list(page.get("items") or [])
        last_after = after_ms
        for _ in range(self.cfg.max_pages):
            nxt = page.get("next")
            if not nxt:
                break
            fwd = payloads.cursor_from_url(nxt, "after")
            back = payloads.cursor_from_url(nxt, "before")
            if fwd is not None:
                if last_after is not None and fwd <= last_after:
                    break  # not moving forward
                last_after = fwd
            elif back is None or (after_ms is not None and back <= after_ms):
                break  # paging back past the cursor: nothing new there
            current = page
            page = self.call(lambda sp: sp.next(current))
            if not page or not page.get("items"):
                break
            items.extend(page["items"])
        return items

    def entity(self, topic: str, entity_id: str) -> dict | None:
        kind = {contracts.TRACKS_TOPIC: "track", contracts.ALBUMS_TOPIC: "album",
                contracts.ARTISTS_TOPIC: "artist"}[topic]
        try:
            return self.call(lambda sp: getattr(sp, kind)(entity_id))
        except SpotifyException as exc:
            if exc.http_status == 404:
                return None  # gone from Spotify: keep what the payload had
            raise


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- the warehouse side ------------------------------------------------------------------------

def read_cursor(dsn: str, user_id: str) -> int | None:
    with db.transaction(dsn) as cur:
        cur.execute("select after_ms from app.ingest_cursors where user_id = %s", (user_id,))
        row = cur.fetchone()
    return row[0] if row else None


def pending_retry_at(dsn: str, user_id: str) -> datetime | None:
    """The `retry_at` of the user's latest outcome, if it is still in the future."""
    with db.transaction(dsn) as cur:
        cur.execute("select retry_at from app.ingest_outcomes where user_id = %s order by id desc limit 1",
                    (user_id,))
        row = cur.fetchone()
    if row and row[0] and row[0] > _utcnow():
        return row[0]
    return None


def record_outcome(dsn: str, run_id: str | None, o: UserOutcome) -> None:
    with db.transaction(dsn) as cur:
        cur.execute("insert into app.ingest_outcomes (run_id, user_id, outcome, plays, reason, retry_at) "
                    "values (%s, %s, %s, %s, %s, %s)",
                    (run_id, o.user_id, o.outcome, o.plays, (o.reason or "")[:1000] or None, o.retry_at))


def commit_success(dsn: str, run_id: str | None, o: UserOutcome, new_cursor: int | None,
                   produced: dict[str, list[str]]) -> None:
    """After Kafka acknowledged everything: cursor, gap, known entities and outcome, atomically."""
    with db.transaction(dsn) as cur:
        if new_cursor is not None:
            # greatest(): a concurrent or stale run can never move a cursor backwards.
            cur.execute(
                "insert into app.ingest_cursors (user_id, after_ms) values (%s, %s) "
                "on conflict (user_id) do update set after_ms = greatest(app.ingest_cursors.after_ms, excluded.after_ms), "
                "updated_at = now()", (o.user_id, new_cursor))
        if o.gap:
            cur.execute("insert into app.ingest_gaps (user_id, gap_from, gap_to) "
                        "values (%s, to_timestamp(%s / 1000.0), to_timestamp(%s / 1000.0)) on conflict do nothing",
                        (o.user_id, o.gap[0], o.gap[1]))
        for topic, ids in produced.items():
            if ids:
                cur.execute("insert into app.entity_cache (entity_type, entity_id) "
                            "select %s, unnest(%s::text[]) on conflict do nothing", (ENTITY_TYPES[topic], ids))
        cur.execute("insert into app.ingest_outcomes (run_id, user_id, outcome, plays, reason) "
                    "values (%s, %s, 'ok', %s, %s)", (run_id, o.user_id, o.plays, o.reason))


# --- one user, many users ------------------------------------------------------------------------

def complete_metadata(session: UserSession, cache: EntityCache, msgs: payloads.PollMessages,
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


def ingest_user(cfg: IngestConfig, user_id: str, *, limiter: RateLimiter, cache: EntityCache,
                run_id: str | None = None, sleep: Callable[[float], None] = time.sleep) -> UserOutcome:
    """Ingest one user; never raises for Spotify or Kafka trouble (it becomes the outcome)."""
    try:
        retry_at = pending_retry_at(cfg.dsn, user_id)
        if retry_at:
            o = UserOutcome(user_id, "rate_limited", reason="still rate limited from an earlier run", retry_at=retry_at)
            record_outcome(cfg.dsn, run_id, o)
            return o
        refresh_token = users.refresh_token_of(cfg.dsn, cfg.fernet_key, user_id)
        if not refresh_token:
            o = UserOutcome(user_id, "needs_reauth", reason="no refresh token stored")
            users.mark_needs_reauth(cfg.dsn, user_id, o.reason)
            record_outcome(cfg.dsn, run_id, o)
            return o
        cursor = read_cursor(cfg.dsn, user_id)
        session = UserSession(cfg, refresh_token, limiter, sleep)
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
            users.save_refresh_token(cfg.dsn, cfg.fernet_key, user_id, new_refresh)
        new_cursor = payloads.newest_played_at(msgs.plays)
        o = UserOutcome(user_id, "ok", plays=len(msgs.plays), gap=gap, cursor=new_cursor or cursor,
                        reason="possible gap: a full window of new plays" if gap else None)
        commit_success(cfg.dsn, run_id, o, new_cursor, produced)
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
    _safely(record_outcome, cfg.dsn, run_id, o)
    return o


def _safely(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # the outcome log is best effort; the task result still carries it
        log.exception("could not record %s", getattr(fn, "__name__", fn))


def ingest_users(cfg: IngestConfig, user_ids: list[str], run_id: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> list[UserOutcome]:
    """Ingest many users with bounded concurrency and one shared rate limiter; outcomes in input order."""
    limiter = RateLimiter(cfg.requests_per_second)
    cache = EntityCache(cfg.dsn)
    with ThreadPoolExecutor(max_workers=max(1, cfg.max_workers), thread_name_prefix="ingest") as pool:
        futures = [pool.submit(ingest_user, cfg, u, limiter=limiter, cache=cache, run_id=run_id, sleep=sleep)
                   for u in user_ids]
        return [f.result() for f in futures]


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
    """Mapped-task inputs: batches of users, each with its share of the app's request budget
    (Spotify rate-limits the app, not the user, so batches running side by side share it)."""
    planned = batches(user_ids, batch_size)
    rps = app_requests_per_second / max(1, min(parallel_batches, len(planned)))
    print(f"{len(user_ids)} active users in {len(planned)} batches, {rps:.1f} requests/s each")
    return [{"user_ids": b, "requests_per_second": rps} for b in planned]


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
