"""Ingestion's own tables: cursors, outcomes, gaps and which entities were already produced.

Every function is one short transaction; `commit_success` is the one that matters: after
Kafka acknowledged a user's messages it moves the cursor, records the gap, the entities now
known and the outcome, atomically.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from weekly_wrapped import contracts, db

if TYPE_CHECKING:
    from weekly_wrapped.ingest.poll import UserOutcome

ENTITY_TYPES = {contracts.TRACKS_TOPIC: "track", contracts.ALBUMS_TOPIC: "album",
                contracts.ARTISTS_TOPIC: "artist"}


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
        # The backfill asks once per track and entity type: one connection for the run's look-ups.
        self.db = db.SharedConnection(dsn)

    def known(self, topic: str, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        rows = self.db.query("select entity_id from app.entity_cache where entity_type = %s and entity_id = any(%s)",
                             (ENTITY_TYPES[topic], ids))
        return {r[0] for r in rows}

    def close(self) -> None:
        self.db.close()

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
    if row and row[0] and row[0] > datetime.now(timezone.utc):
        return row[0]
    return None


def record_outcome(dsn: str, run_id: str | None, o: UserOutcome) -> None:
    with db.transaction(dsn) as cur:
        cur.execute("insert into app.ingest_outcomes (run_id, user_id, outcome, plays, reason, retry_at) "
                    "values (%s, %s, %s, %s, %s, %s)",
                    (run_id, o.user_id, o.outcome, o.plays, (o.reason or "")[:1000] or None, o.retry_at))


def remember_entities(cur, produced: dict[str, list[str]]) -> None:
    """Record produced entities in `app.entity_cache`, inside the caller's transaction."""
    for topic in sorted(produced):
        if produced[topic]:
            # Sorted: two users' transactions lock the same new ids in the same order, so never deadlock.
            cur.execute("insert into app.entity_cache (entity_type, entity_id) "
                        "select %s, unnest(%s::text[]) on conflict do nothing",
                        (ENTITY_TYPES[topic], sorted(set(produced[topic]))))


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
        remember_entities(cur, produced)
        cur.execute("insert into app.ingest_outcomes (run_id, user_id, outcome, plays, reason) "
                    "values (%s, %s, 'ok', %s, %s)", (run_id, o.user_id, o.plays, o.reason))
