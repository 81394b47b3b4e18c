"""Metadata backfill: full metadata for tracks known only by name (from privacy exports).

A privacy export names a track but not its album or artists, so without this its plays
would be missing from top artists/albums/genres. `history_import.import_export` queues
every imported track id that ingestion has not produced yet in `app.metadata_backlog`;
`spotify_ingest` drains a bounded slice of it every hour (`backfill`), after its
per-user batches, so the two never compete for Spotify's per-app rate limit.

Per run, at most `per_run` tracks (Variable `wrapped_metadata_backfill_per_run`, default 200):

1. rows whose track ingestion produced meanwhile (`app.entity_cache`) are done without a look-up;
2. `GET /v1/tracks/{id}` one id at a time (the batch look-ups are gone for development-mode
   apps); its album and artists go through `poll.complete_metadata`, the very code the hourly
   poll uses: entities already produced are dropped, incomplete ones (in practice artists, for
   their image) fetched with `/v1/albums/{id}` / `/v1/artists/{id}`, once per entity;
3. produce (artists, albums, tracks), flush, and only then, in one transaction, record the
   entities in `app.entity_cache` and mark the rows done.

Whose token: catalogue look-ups answer the same for every user, so one run borrows one
active user's refresh token: the user who queued the oldest pending row if still active (their
own consent covers their own export), else any active user.

Errors follow ingestion's policy (`spotify.client.UserSession`): short 429s are waited out; a long
429 or QUOTA_EXCEEDED stops this run (never a sleep for hours) and the rest waits for the
next one; `invalid_grant` marks the token's owner `needs_reauth` and stops; 5xx/timeouts
after the usual retries stop the run and count an attempt on that row; a 404 marks the row
done (the track is gone; its name stays); 401/403 stop the run; another 4xx (a malformed id)
counts an attempt and moves on.
A row is given up after MAX_ATTEMPTS. A Kafka failure raises: nothing was marked done.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from weekly_wrapped import contracts, db
from weekly_wrapped.ingest import catalogue, poll, store
from weekly_wrapped.ingest.poll import IngestConfig
from weekly_wrapped.spotify import payloads

log = logging.getLogger(__name__)

# A row that failed this often (5xx, odd 4xx) is left alone; its last_error says why.
MAX_ATTEMPTS = 5


# --- pure parts ---------------------------------------------------------------------------------

def tracks_to_queue(plays: Iterable[dict]) -> list[str]:
    """The distinct track ids of imported plays, in a stable order."""
    return sorted({p["track_id"] for p in plays})


# --- the warehouse side ----------------------------------------------------------------------------

def queue_tracks(dsn: str, user_id: str, track_ids: list[str]) -> int:
    """Queue tracks ingestion has not produced (not in app.entity_cache); returns how many were new."""
    if not track_ids:
        return 0
    with db.transaction(dsn) as cur:
        # on conflict do nothing: a re-import never re-opens a done row nor resets its attempts.
        cur.execute(
            "insert into app.metadata_backlog (track_id, user_id) "
            "select t, %s from unnest(%s::text[]) as t "
            "where not exists (select 1 from app.entity_cache c where c.entity_type = 'track' and c.entity_id = t) "
            "on conflict (track_id) do nothing", (user_id, track_ids))
        queued = cur.rowcount
    return queued


def _user_filter(user_ids: list[str] | None) -> tuple[str, tuple]:
    return ("and user_id = any(%s)", (user_ids,)) if user_ids is not None else ("", ())


def settle_known(dsn: str, user_ids: list[str] | None = None) -> int:
    """Mark done the pending rows whose track ingestion produced in the meantime (no look-up needed)."""
    where, params = _user_filter(user_ids)
    with db.transaction(dsn) as cur:
        cur.execute(
            "update app.metadata_backlog b set done_at = now() where done_at is null "
            f"and exists (select 1 from app.entity_cache c where c.entity_type = 'track' and c.entity_id = b.track_id) {where}",
            params)
        settled = cur.rowcount
    return settled


def pending(dsn: str, limit: int, user_ids: list[str] | None = None) -> list[tuple[str, str]]:
    """(track_id, user_id) of the next rows to look up: fewest failed attempts first, then oldest."""
    where, params = _user_filter(user_ids)
    with db.transaction(dsn) as cur:
        cur.execute(
            f"select track_id, user_id from app.metadata_backlog where done_at is null and attempts < %s {where} "
            "order by attempts, queued_at, track_id limit %s", (MAX_ATTEMPTS, *params, limit))
        rows = [(r[0], r[1]) for r in cur.fetchall()]
    return rows


def backlog_counts(dsn: str, user_ids: list[str] | None = None) -> dict[str, int]:
    where, params = _user_filter(user_ids)
    with db.transaction(dsn) as cur:
        cur.execute(
            "select count(*) filter (where done_at is null and attempts < %s), "
            "count(*) filter (where done_at is null and attempts >= %s), count(*) filter (where done_at is not null) "
            f"from app.metadata_backlog where true {where}", (MAX_ATTEMPTS, MAX_ATTEMPTS, *params))
        waiting, given_up, done = cur.fetchone()
    return {"waiting": waiting, "given_up": given_up, "done": done}


def commit_run(dsn: str, produced: dict[str, list[str]], done: dict[str, str | None],
               failed: dict[str, tuple[str, bool]]) -> None:
    """After Kafka acknowledged: entities known, rows done (with a note, e.g. 404), failures noted; atomically."""
    with db.transaction(dsn) as cur:
        store.remember_entities(cur, produced)
        for track_id, note in done.items():
            cur.execute("update app.metadata_backlog set done_at = now(), last_error = %s, "
                        "attempts = attempts + %s where track_id = %s", (note, 1 if note else 0, track_id))
        for track_id, (error, counted) in failed.items():
            cur.execute("update app.metadata_backlog set last_error = %s, attempts = attempts + %s "
                        "where track_id = %s", (error[:1000], 1 if counted else 0, track_id))


# --- one run -------------------------------------------------------------------------------------------

@dataclass
class BackfillResult:
    selected: int = 0          # rows taken from the backlog this run
    already_known: int = 0     # rows ingestion had produced meanwhile: done without a look-up
    completed: int = 0         # tracks produced with full metadata
    not_found: int = 0         # 404: done, keeps its name only
    failed: int = 0            # rows that failed this run (see app.metadata_backlog.last_error)
    produced: dict[str, int] = field(default_factory=dict)  # messages per topic
    token_user: str | None = None
    stopped: str | None = None  # why the run stopped before its slice was done

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def backfill(cfg: IngestConfig, per_run: int, *, user_ids: list[str] | None = None,
             sleep: Callable[[float], None] = time.sleep) -> BackfillResult:
    """Look up, produce and mark done at most `per_run` backlog tracks (only those `user_ids` queued, if given).

    Raises `producer.DeliveryFailed` when Kafka did not acknowledge everything (nothing is
    marked done, so Airflow's retry does the same slice again).
    """
    result = BackfillResult()
    result.already_known = settle_known(cfg.dsn, user_ids)
    rows = pending(cfg.dsn, per_run, user_ids) if per_run > 0 else []
    result.selected = len(rows)
    if not rows:
        return result
    borrowed = catalogue.borrow_session(cfg, [u for _, u in rows], user_ids, sleep)
    if borrowed is None:
        result.stopped = "no active user whose token could be used"
        return result
    result.token_user = borrowed.user_id
    session, cache = borrowed.session, store.EntityCache(cfg.dsn)
    now_ms = int(time.time() * 1000)

    out = payloads.PollMessages()  # everything this run produces, one message per entity
    done: dict[str, str | None] = {}
    failed: dict[str, tuple[str, bool]] = {}
    for track_id, _ in rows:
        try:
            full = cache.fetch_once(contracts.TRACKS_TOPIC, track_id,
                                    lambda i=track_id: session.entity(contracts.TRACKS_TOPIC, i))
            if full is None:
                done[track_id] = "not found on Spotify"
                result.not_found += 1
                continue
            msgs = payloads.PollMessages()
            payloads.add_track_entities(msgs, full, now_ms)
            # The album and artists only if still unknown, and only the incomplete ones are fetched.
            to_produce = poll.complete_metadata(session, cache, msgs, now_ms)
        except Exception as exc:
            error, step = catalogue.failure(cfg, borrowed, exc)
            failed[track_id] = (error, step.count_attempt)
            result.failed += 1
            if step.stop:
                result.stopped = error
                break
            continue
        catalogue.keep_new(out, msgs, to_produce)
        done[track_id] = None
        result.completed += 1

    cache.close()
    produced = catalogue.produce_found(cfg, borrowed, out)  # raises DeliveryFailed: nothing marked done
    result.produced = {topic: len(ids) for topic, ids in produced.items()}
    commit_run(cfg.dsn, produced, done, failed)
    log.info("metadata backfill: %s", result.as_dict())
    return result
