"""spotify_ingest: every hour, each active user's new Spotify plays and their metadata into Kafka.

Users are split into batches and the batches mapped over (`ingest_batch`), so a run scales
past hundreds of users while each mapped task's name shows its users' outcomes in the UI
(e.g. `demo-ana ok 12, demo-yuki rate-limited`). Inside a batch users run in a small thread
pool. Every request takes the next slot of the app's one request budget, shared through
Postgres by all batches running at once (`weekly_wrapped.ingest.budget`): Spotify limits the
app, not the user, and whichever batches run share the whole rate, so a run of 1,000 users
takes about (requests ÷ rate) plus task start-up. A user's cursor moves only after Kafka acknowledged all
their messages; a Kafka failure fails the batch and Airflow's retry starts from the same cursor.
Rate-limited users are skipped until their `retry_at`; `invalid_grant` marks a user
`needs_reauth`. Details per user: `app.ingest_outcomes`; gaps: `app.ingest_gaps`.

After the batches (whatever their outcome), `backfill_metadata` fetches the full metadata of
tracks known only by name from privacy exports (`app.metadata_backlog`), at most
`wrapped_metadata_backfill_per_run` tracks (Variable, default 200; param `metadata_backfill_per_run`
overrides it for one run), one id at a time, with an active user's token; a long 429 stops it
until the next run. See `weekly_wrapped.ingest.metadata_backfill`.
Then `resolve_tracks` gives tracks known only by artist and track name (account-data exports,
`app.track_resolutions`) their Spotify ids through the search endpoint, at most
`wrapped_track_resolution_per_run` searches (Variable, default 200; param `track_resolution_per_run`
overrides it for one run), each name pair once; see `weekly_wrapped.ingest.track_resolution`.

Alongside, `fill_genres` gives artists that Spotify gave no genres their genres from MusicBrainz's
tags, when the installation enables it (Variable `wrapped_musicbrainz_genres`, default false: it
sends artist names to MusicBrainz), at most `wrapped_musicbrainz_genres_per_run` artists (default
120; param `musicbrainz_genres_per_run` overrides it for one run) at one request a second
(`musicbrainz_default`'s `requests_per_second`: more only for a mirror of one's own), each
artist once; see `weekly_wrapped.ingest.genres`. Skipped when not enabled.

Before the batches, `rotate_token_keys` refuses published demo secrets outside demo mode and, when
`wrapped_token_secret` lists more than one key (NEW,OLD while rolling a key in), re-encrypts
every stored refresh token not yet under the newest key (`weekly_wrapped.users.tokens.rotate`);
with one key it reads nothing. Its result is how many it re-encrypted: 0 on a later run means
the old key can be dropped.

Each successful batch updates the `KAFKA_PLAYS` asset, with the play count in the event's extra.
Connections: `spotify_default`, `kafka_default`, `postgres_default`, `musicbrainz_default`.
Variables: `wrapped_ingest_batch_size` (users per mapped task, default 250), `wrapped_ingest_threads`
(users at once in a batch, default 8), `wrapped_spotify_rps` (the app's request budget per second,
default 10, shared by the batches that run at once; param `spotify_rps` overrides it for one run),
`wrapped_token_secret`.
Parse-time environment (they shape the DAG): `WRAPPED_INGEST_SCHEDULE` (cron, default `@hourly`),
`WRAPPED_INGEST_PARALLEL_BATCHES` (mapped batches at once, default 4).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import Param, dag, task

from weekly_wrapped.airflow.alerting import AlertOnFailure, ResolveOnSuccess
from weekly_wrapped.airflow.assets import KAFKA_PLAYS

DAG_ID = Path(__file__).stem
PARALLEL_BATCHES = int(os.getenv("WRAPPED_INGEST_PARALLEL_BATCHES", "4"))


@dag(
    dag_id=DAG_ID,
    schedule=os.getenv("WRAPPED_INGEST_SCHEDULE", "@hourly"),
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    # Two overlapping runs would poll the same users at once; cursors only move forward, but why waste quota.
    max_active_runs=1,
    tags=["weekly-wrapped", "ingest", "spotify", "kafka"],
    default_args={"retries": 3, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": True},
    params={
        # None: the Variable wrapped_spotify_rps decides at run time.
        "spotify_rps": Param(None, type=["null", "number"], exclusiveMinimum=0,
                             description="the app's Spotify requests per second for this run's batches"),
        # None: the Variable wrapped_metadata_backfill_per_run (default 200) decides at run time.
        "metadata_backfill_per_run": Param(None, type=["null", "integer"], minimum=0,
                                           description="tracks the metadata backfill may look up this run"),
        # None: the Variable wrapped_track_resolution_per_run (default 200) decides at run time.
        "track_resolution_per_run": Param(None, type=["null", "integer"], minimum=0,
                                          description="name pairs the track resolution may search this run"),
        # None: the Variable wrapped_musicbrainz_genres_per_run (default 120) decides at run time.
        "musicbrainz_genres_per_run": Param(None, type=["null", "integer"], minimum=0,
                                            description="artists whose genres may be looked up this run"),
    },
    on_failure_callback=AlertOnFailure(),  # one e-mail to the operator per failing DAG
    on_success_callback=ResolveOnSuccess(),
    doc_md=__doc__,
)
def spotify_ingest():
    @task
    def rotate_token_keys() -> int:
        """Refuse published secrets; re-encrypt stored refresh tokens not under the newest token key."""
        from weekly_wrapped import secrets_check
        from weekly_wrapped.airflow import connections as conns
        from weekly_wrapped.users import tokens

        secrets_check.refuse_in_task()
        rotated = tokens.rotate(conns.warehouse_dsn(), conns.variable("wrapped_token_secret"))
        print(f"refresh tokens re-encrypted with the newest key of wrapped_token_secret: {rotated}")
        return rotated

    @task
    def plan_batches(params: dict) -> list[dict]:
        """Active users (not needs_reauth / unsubscribed) in batches, with the app's shared request rate."""
        from weekly_wrapped.airflow import connections as conns
        from weekly_wrapped.ingest.poll import plan_batches as plan
        from weekly_wrapped.users.accounts import list_active_users

        rps = params.get("spotify_rps") or float(conns.variable("wrapped_spotify_rps"))
        return plan(list_active_users(conns.warehouse_dsn()), int(conns.variable("wrapped_ingest_batch_size")),
                    float(rps), PARALLEL_BATCHES)

    @task(
        map_index_template="{{ ingest_label }}",
        max_active_tis_per_dagrun=PARALLEL_BATCHES,
        outlets=[KAFKA_PLAYS],
    )
    def ingest_batch(batch: dict) -> list[dict]:
        """Poll, produce and advance cursors for one batch of users; fail if a retry could help."""
        from airflow.sdk import get_current_context

        from weekly_wrapped.airflow.connections import ingest_config
        from weekly_wrapped.ingest.poll import ingest_users, raise_for_failures, report, summary_label

        context = get_current_context()
        context["ingest_label"] = ", ".join(batch["user_ids"])[:200]  # until the outcomes are known
        outcomes = ingest_users(ingest_config(batch["requests_per_second"]), list(batch["user_ids"]),
                                run_id=context["run_id"])
        context["ingest_label"] = summary_label(outcomes)
        print(report(outcomes))
        context["outlet_events"][KAFKA_PLAYS].extra = {"plays": sum(o.plays for o in outcomes),
                                                       "users": len(outcomes)}
        raise_for_failures(outcomes)  # after everyone ran: one user's failure never stops the others
        return [o.as_dict() for o in outcomes]

    @task
    def summarize(results: list[list[dict]]) -> dict:
        """Outcome counts for the whole run (XCom and log)."""
        from weekly_wrapped.ingest.poll import count_outcomes

        counts = count_outcomes(results)
        print(f"spotify_ingest: {counts}")
        return counts

    # all_done: exports need their metadata even in an hour when some user's batch failed; and
    # after the batches, so the backfill has the app's whole request budget to itself.
    @task(trigger_rule="all_done")
    def backfill_metadata(params: dict) -> dict:
        """Full track/album/artist metadata for a bounded slice of tracks known only from exports."""
        from weekly_wrapped.airflow import connections as conns
        from weekly_wrapped.ingest import metadata_backfill
        from weekly_wrapped.ingest.catalogue import per_run_budget

        per_run = per_run_budget(params.get("metadata_backfill_per_run"),
                                 conns.variable("wrapped_metadata_backfill_per_run"))
        cfg = conns.ingest_config(float(conns.variable("wrapped_spotify_rps")))
        result = metadata_backfill.backfill(cfg, per_run)
        left = metadata_backfill.backlog_counts(cfg.dsn)
        print(f"metadata backfill (budget {per_run}): {result.as_dict()}; backlog now {left}")
        return {**result.as_dict(), "backlog": left}

    # all_done, after the backfill: the two share the app's request budget one after the other, and
    # a backfill that failed (Kafka) must not keep account-data plays from their track ids.
    @task(trigger_rule="all_done")
    def resolve_tracks(params: dict) -> dict:
        """Spotify ids (and full metadata) for a bounded slice of tracks known only by name from exports."""
        from weekly_wrapped.airflow import connections as conns
        from weekly_wrapped.ingest import track_resolution
        from weekly_wrapped.ingest.catalogue import per_run_budget

        per_run = per_run_budget(params.get("track_resolution_per_run"),
                                 conns.variable("wrapped_track_resolution_per_run"))
        cfg = conns.ingest_config(float(conns.variable("wrapped_spotify_rps")))
        result = track_resolution.resolve(cfg, per_run)
        left = track_resolution.backlog_counts(cfg.dsn)
        print(f"track resolution (budget {per_run}): {result.as_dict()}; backlog now {left}")
        return {**result.as_dict(), "backlog": left}

    # Beside the batches, not after them: MusicBrainz is not Spotify, so nothing shares a budget.
    @task
    def fill_genres(params: dict) -> dict:
        """Genres from MusicBrainz for a bounded slice of the artists Spotify gave none; skipped unless enabled."""
        from airflow.sdk.exceptions import AirflowSkipException

        from weekly_wrapped.airflow import connections as conns
        from weekly_wrapped.ingest import genres
        from weekly_wrapped.ingest.catalogue import per_run_budget

        if conns.variable("wrapped_musicbrainz_genres").strip().lower() != "true":
            raise AirflowSkipException("MusicBrainz genres are off (Variable wrapped_musicbrainz_genres)")
        per_run = per_run_budget(params.get("musicbrainz_genres_per_run"),
                                 conns.variable("wrapped_musicbrainz_genres_per_run"))
        dsn = conns.warehouse_dsn()
        result = genres.fill_genres(dsn, conns.musicbrainz_config(), per_run)
        left = genres.genre_counts(dsn)
        print(f"musicbrainz genres (budget {per_run}): {result.as_dict()}; now {left}")
        return {**result.as_dict(), "counts": left}

    fill_genres()
    planned = plan_batches()
    rotate_token_keys() >> planned
    batches_done = ingest_batch.expand(batch=planned)
    summarize(batches_done)
    batches_done >> backfill_metadata() >> resolve_tracks()


spotify_ingest()
