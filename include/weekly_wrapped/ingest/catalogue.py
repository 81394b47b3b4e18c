"""What the catalogue look-ups share: the metadata backfill and the track resolution.

Both take a bounded slice of a backlog, borrow one active user's token (catalogue answers are the
same for everyone), look things up one at a time under ingestion's error policy, and produce what
they found before marking any row. This module holds those shared steps; each backlog's own SQL and
matching stay in its module.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from spotipy.exceptions import SpotifyException

from weekly_wrapped.ingest import poll
from weekly_wrapped.ingest.poll import IngestConfig
from weekly_wrapped.spotify import client as spotify
from weekly_wrapped.spotify import payloads
from weekly_wrapped.spotify.client import NeedsReauth, RateLimited, RateLimiter, SpotifyUnavailable, UserSession
from weekly_wrapped.users import accounts as users
from weekly_wrapped.users.tokens import TokenUndecryptable


# --- pure parts ---------------------------------------------------------------------------------

def per_run_budget(value: str | int | None, fallback: str | int) -> int:
    """Look-ups in one run: `value` (a DAG param) when given, else `fallback` (the Variable)."""
    chosen = fallback if value is None or str(value).strip() == "" else value
    budget = int(chosen)
    if budget < 0:
        raise ValueError(f"a per-run budget must be >= 0, got {budget}")
    return budget


def token_user(pending_user_ids: list[str], active_user_ids: list[str]) -> str | None:
    """Whose refresh token the run borrows: the oldest pending row's importer if active, else any active user."""
    active = set(active_user_ids)
    for user_id in pending_user_ids:
        if user_id in active:
            return user_id
    return active_user_ids[0] if active_user_ids else None


@dataclass(frozen=True)
class ErrorStep:
    stop: bool           # stop the run here (the remaining rows wait for the next run)
    count_attempt: bool  # the row's fault, or possibly: count it towards the row's attempts


def on_error(exc: Exception) -> ErrorStep:
    """What a failed look-up means for the run and for its row; re-raises what no retry can fix."""
    if isinstance(exc, (RateLimited, NeedsReauth)):
        return ErrorStep(stop=True, count_attempt=False)  # not the row's fault
    if isinstance(exc, SpotifyUnavailable):
        # Counted, so one row that always makes Spotify fail cannot block the backlog forever.
        return ErrorStep(stop=True, count_attempt=True)
    if isinstance(exc, SpotifyException) and exc.http_status in (401, 403):
        return ErrorStep(stop=True, count_attempt=False)  # the token or the app, not the row
    if isinstance(exc, SpotifyException) and 400 <= exc.http_status < 500:
        return ErrorStep(stop=False, count_attempt=True)  # e.g. a malformed id: this row only
    raise exc


def keep_new(out: payloads.PollMessages, found: payloads.PollMessages, to_produce: dict[str, list[str]]) -> None:
    """Add the entities of one look-up that still need producing to the run's messages, once each."""
    for topic in poll.PRODUCE_ORDER:
        entities = found.entities(topic)
        for entity_id in to_produce[topic]:
            out.entities(topic).setdefault(entity_id, entities[entity_id])


# --- I/O ----------------------------------------------------------------------------------------

@dataclass
class Borrowed:
    """An active user's session, lent to a catalogue run."""

    user_id: str
    refresh_token: str
    session: UserSession


def borrow_session(cfg: IngestConfig, pending_user_ids: list[str], user_ids: list[str] | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> Borrowed | None:
    """A session on `token_user`'s token (only among `user_ids`, if given); None without an active user.

    A user whose stored token no configured key decrypts is marked `needs_reauth` and the next one
    is borrowed instead.
    """
    active = users.list_active_users(cfg.dsn)
    if user_ids is not None:
        active = [u for u in active if u in set(user_ids)]
    while (user_id := token_user(pending_user_ids, active)) is not None:
        try:
            refresh_token = users.refresh_token_of(cfg.dsn, cfg.token_secret, user_id)
        except TokenUndecryptable as exc:
            users.mark_needs_reauth(cfg.dsn, user_id, str(exc))
            active = [u for u in active if u != user_id]
            continue
        session = UserSession(cfg.app, cfg.policy, refresh_token, RateLimiter(cfg.requests_per_second), sleep)
        return Borrowed(user_id, refresh_token, session)
    return None


def failure(cfg: IngestConfig, borrowed: Borrowed, exc: Exception) -> tuple[str, ErrorStep]:
    """(the row's error text, what to do) for a look-up that raised; a rejected token marks its owner."""
    step = on_error(exc)  # re-raises configuration errors (e.g. invalid_client)
    if isinstance(exc, NeedsReauth):
        users.mark_needs_reauth(cfg.dsn, borrowed.user_id, str(exc))
    return f"{type(exc).__name__}: {exc}", step


def produce_found(cfg: IngestConfig, borrowed: Borrowed, out: payloads.PollMessages) -> dict[str, list[str]]:
    """Keep a rotated refresh token, produce the run's entities and wait for Kafka; returns the ids per topic.

    Raises `producer.DeliveryFailed` when Kafka did not acknowledge everything: the caller then
    marks no row, so Airflow's retry does the same slice again.
    """
    from weekly_wrapped.ingest.producer import StreamProducer

    new_refresh = spotify.current_refresh_token(borrowed.session.oauth)
    if new_refresh and new_refresh != borrowed.refresh_token:  # Spotify may rotate it: keep the live one
        users.save_refresh_token(cfg.dsn, cfg.token_secret, borrowed.user_id, new_refresh)
    producer = StreamProducer(cfg.kafka_config, cfg.topics)
    for topic in poll.PRODUCE_ORDER:
        producer.send_all(((topic, m) for m in out.entities(topic).values()), validated=True)
    producer.flush(cfg.flush_timeout_s)
    return {topic: list(out.entities(topic)) for topic in poll.PRODUCE_ORDER}
