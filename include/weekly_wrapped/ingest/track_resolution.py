"""Track resolution: Spotify ids for tracks an account-data export knows only by name.

An account-data export (`StreamingHistory*.json`) has `artistName` and `trackName` but no ids,
so its plays count at once under `contracts.name_key("track", artist, track)` and the import
queues one row per name pair in `app.track_resolutions` (the table is the cache: a pair is
searched until it is `resolved` or `not_found`, never again after). dbt maps the name-keyed
plays to the resolved `track_id`, so they become the same plays as polled or extended-history
copies. `spotify_ingest` drains a bounded slice every hour (`resolve`), after its per-user
batches, so the two never compete for Spotify's per-app rate limit.

First, without a search (`settle_known`): pending pairs that a real Spotify track already in the
warehouse answers (`raw.tracks` joined to `raw.artists` by the same names, as extended-history
imports and the poll bring them) are resolved to it, preferring a track the user's own plays use,
so an account-data play and its extended-history copy get the very same id. Then, per run, at
most `per_run` look-ups (Variable `wrapped_track_resolution_per_run`, default 200), fewest attempts
then oldest first:

1. `GET /v1/search?type=track` with `track:"…" artist:"…"` (`UserSession.search_track`, at most
   the 10 items a development-mode app may ask for);
2. the best match (`best_match`): the track name and one of the item's artists equal to the
   export's, compared NFC-normalised and case-folded as `name_key` does (the primary artist
   before a featured one, then Spotify's order). No such item: `not_found` (no fuzzy guesses:
   a wrong id would merge two songs' plays);
3. a found track's album and artists go through `poll.complete_metadata`, the poll's own code
   (entities already produced are dropped, incomplete ones fetched once), so the resolved
   track has its names and images;
4. produce (artists, albums, tracks), flush, and only then, in one transaction, record the
   entities in `app.entity_cache` and the rows `resolved` (with `track_id`) or `not_found`.

Whose token, and errors, exactly as `metadata_backfill`: one active user's refresh token per run
(the user who queued the oldest pending row if still active, else any active user); short 429s
are waited out; a long 429 or QUOTA_EXCEEDED stops the run without counting an attempt (never a
sleep for hours: the rest waits for the next run); `invalid_grant` marks the token's owner
`needs_reauth` and stops; 5xx/timeouts after the usual retries stop the run and count an
attempt; another 4xx counts an attempt and moves on. A row with MAX_ATTEMPTS counted attempts is
given up (`not_found`, its `last_error` says why). A Kafka failure raises: nothing was marked.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from weekly_wrapped import contracts, db
from weekly_wrapped.ingest import catalogue, poll, store
from weekly_wrapped.ingest.poll import IngestConfig
from weekly_wrapped.spotify import payloads

log = logging.getLogger(__name__)

# A row whose look-up failed this often (5xx, odd 4xx) is given up: not_found, last_error says why.
MAX_ATTEMPTS = 5


# --- pure parts ---------------------------------------------------------------------------------

def fold(name: str | None) -> str:
    """A name as `contracts.name_key` compares it: NFC-normalised, trimmed, case-folded."""
    return unicodedata.normalize("NFC", name or "").strip().casefold()


def best_match(items: Iterable[Mapping], artist: str, track: str) -> dict | None:
    """The search item that IS this (artist, track): same track name and the artist among its artists.

    Names compare as `name_key` compares them. The export's artist is the primary one, so an item
    where it comes first wins over one where it is featured; otherwise Spotify's order decides.
    Nothing equal: None (a near miss is not the same song).
    """
    want_artist, want_track = fold(artist), fold(track)
    featured = None
    for item in items:
        if not item or not item.get("id") or fold(item.get("name")) != want_track:
            continue
        names = [fold(a.get("name")) for a in item.get("artists") or []]
        if names[:1] == [want_artist]:
            return dict(item)
        if featured is None and want_artist in names:
            featured = dict(item)
    return featured


def choose_known(candidates: Iterable[tuple]) -> dict[str, str]:
    """name_key -> track id, from warehouse candidates
    (name_key, artist, track, track_id, track name, artist name, artist position, played by the user).

    The names must be equal as `name_key` compares them (the SQL's `lower()` only narrows);
    name-keyed tracks are no answer. A track the user's own plays use first (then it is the same
    play as its copy), then one where the artist comes first, then the smallest id (stable).
    """
    best: dict[str, tuple] = {}
    for key, artist, track, track_id, name, artist_name, position, own in candidates:
        if contracts.is_name_key(track_id) or fold(name) != fold(track) or fold(artist_name) != fold(artist):
            continue
        rank = (not own, position or 1_000, track_id)
        if key not in best or rank < best[key]:
            best[key] = rank
    return {key: rank[2] for key, rank in best.items()}


@dataclass(frozen=True)
class Pending:
    name_key: str
    artist_name: str
    track_name: str
    user_id: str


# --- the warehouse side ----------------------------------------------------------------------------

def _user_filter(user_ids: list[str] | None) -> tuple[str, tuple]:
    return ("and user_id = any(%s)", (user_ids,)) if user_ids is not None else ("", ())


def settle_known(dsn: str, user_ids: list[str] | None = None) -> int:
    """Resolve, without a search, the pending pairs a Spotify track already in raw.tracks answers."""
    where, params = ("and r.user_id = any(%s)", (user_ids,)) if user_ids is not None else ("", ())
    with db.transaction(dsn) as cur:
        # The importers' played tracks once, hashed (not a probe of raw.plays per candidate).
        cur.execute(
            "with r as (select * from app.track_resolutions r where r.status = 'pending' " + where + "), "
            "mine as (select distinct p.user_id, p.track_id from raw.plays p "
            "         where p.user_id in (select distinct user_id from r)) "
            "select r.name_key, r.artist_name, r.track_name, t.track_id, t.name, a.name, "
            "array_position(t.artist_ids, a.artist_id), m.track_id is not null "
            "from r "
            "join raw.tracks t on lower(t.name) = lower(r.track_name) and left(t.track_id, %s) <> %s "
            "join raw.artists a on a.artist_id = any(t.artist_ids) and lower(a.name) = lower(r.artist_name) "
            "left join mine m on m.user_id = r.user_id and m.track_id = t.track_id",
            (*params, len(contracts.NAME_KEY_PREFIX), contracts.NAME_KEY_PREFIX))
        known = choose_known(cur.fetchall())
        for key, track_id in sorted(known.items()):
            cur.execute("update app.track_resolutions set status = 'resolved', track_id = %s, resolved_at = now(), "
                        "last_error = null where name_key = %s and status = 'pending'", (track_id, key))
    return len(known)


def pending(dsn: str, limit: int, user_ids: list[str] | None = None) -> list[Pending]:
    """The next rows to search: fewest failed attempts first, then oldest."""
    where, params = _user_filter(user_ids)
    with db.transaction(dsn) as cur:
        cur.execute(
            "select name_key, artist_name, track_name, user_id from app.track_resolutions "
            f"where status = 'pending' and attempts < %s {where} "
            "order by attempts, queued_at, name_key limit %s", (MAX_ATTEMPTS, *params, limit))
        rows = [Pending(*r) for r in cur.fetchall()]
    return rows


def backlog_counts(dsn: str, user_ids: list[str] | None = None) -> dict[str, int]:
    where, params = _user_filter(user_ids)
    with db.transaction(dsn) as cur:
        cur.execute(
            "select count(*) filter (where status = 'pending'), count(*) filter (where status = 'resolved'), "
            "count(*) filter (where status = 'not_found') "
            f"from app.track_resolutions where true {where}", params)
        waiting, resolved, not_found = cur.fetchone()
    return {"pending": waiting, "resolved": resolved, "not_found": not_found}


def commit_run(dsn: str, produced: dict[str, list[str]], resolved: dict[str, str], not_found: dict[str, str],
               failed: dict[str, tuple[str, bool]]) -> None:
    """After Kafka acknowledged: entities known, rows resolved / not found, failures noted; atomically."""
    with db.transaction(dsn) as cur:
        store.remember_entities(cur, produced)
        for key, track_id in resolved.items():
            cur.execute("update app.track_resolutions set status = 'resolved', track_id = %s, resolved_at = now(), "
                        "attempts = attempts + 1, last_error = null where name_key = %s", (track_id, key))
        for key, note in not_found.items():
            cur.execute("update app.track_resolutions set status = 'not_found', resolved_at = now(), "
                        "attempts = attempts + 1, last_error = %s where name_key = %s", (note[:1000], key))
        for key, (error, counted) in failed.items():
            # The attempt that reaches MAX_ATTEMPTS gives the row up.
            cur.execute(
                "update app.track_resolutions set last_error = %s, attempts = attempts + %s, "
                "status = case when attempts + %s >= %s then 'not_found' else status end, "
                "resolved_at = case when attempts + %s >= %s then now() else resolved_at end "
                "where name_key = %s",
                (error[:1000], int(counted), int(counted), MAX_ATTEMPTS, int(counted), MAX_ATTEMPTS, key))


# --- one run -------------------------------------------------------------------------------------------

@dataclass
class ResolutionResult:
    already_known: int = 0     # resolved without a search: the track was in the warehouse already
    selected: int = 0          # pending rows taken this run (at most the budget)
    searched: int = 0          # search look-ups made
    resolved: int = 0          # rows given their Spotify track id
    not_found: int = 0         # no item with these names: not_found, never searched again
    failed: int = 0            # rows that failed this run (see app.track_resolutions.last_error)
    produced: dict[str, int] = field(default_factory=dict)  # messages per topic
    token_user: str | None = None
    stopped: str | None = None  # why the run stopped before its slice was done

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def resolve(cfg: IngestConfig, per_run: int, *, user_ids: list[str] | None = None,
            sleep: Callable[[float], None] = time.sleep) -> ResolutionResult:
    """Search, produce and mark at most `per_run` pending name pairs (only those `user_ids` queued, if given).

    Raises `producer.DeliveryFailed` when Kafka did not acknowledge everything (no row is
    marked, so Airflow's retry searches the same slice again).
    """
    result = ResolutionResult()
    result.already_known = settle_known(cfg.dsn, user_ids)
    rows = pending(cfg.dsn, per_run, user_ids) if per_run > 0 else []
    result.selected = len(rows)
    if not rows:
        return result
    borrowed = catalogue.borrow_session(cfg, [r.user_id for r in rows], user_ids, sleep)
    if borrowed is None:
        result.stopped = "no active user whose token could be used"
        return result
    result.token_user = borrowed.user_id
    session, cache = borrowed.session, store.EntityCache(cfg.dsn)
    now_ms = int(time.time() * 1000)

    out = payloads.PollMessages()  # everything this run produces, one message per entity
    resolved: dict[str, str] = {}
    not_found: dict[str, str] = {}
    failed: dict[str, tuple[str, bool]] = {}
    for row in rows:
        try:
            result.searched += 1
            items = session.search_track(row.artist_name, row.track_name)
            match = best_match(items, row.artist_name, row.track_name)
            if match is None:
                not_found[row.name_key] = f"no exact match among {len(items)} search results"
                result.not_found += 1
                continue
            msgs = payloads.PollMessages()
            payloads.add_track_entities(msgs, match, now_ms)
            # Entities produced before are dropped; only incomplete ones (artists' images) are fetched.
            to_produce = poll.complete_metadata(session, cache, msgs, now_ms)
        except Exception as exc:
            error, step = catalogue.failure(cfg, borrowed, exc)
            failed[row.name_key] = (error, step.count_attempt)
            result.failed += 1
            if step.stop:
                result.stopped = error
                break
            continue
        catalogue.keep_new(out, msgs, to_produce)
        resolved[row.name_key] = match["id"]
        result.resolved += 1

    cache.close()
    produced = catalogue.produce_found(cfg, borrowed, out)  # raises DeliveryFailed: no row is marked
    result.produced = {topic: len(ids) for topic, ids in produced.items()}
    commit_run(cfg.dsn, produced, resolved, not_found, failed)
    log.info("track resolution: %s", result.as_dict())
    return result
