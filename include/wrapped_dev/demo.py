"""`wrapped demo`: the whole pipeline for the demo listeners, run through Airflow.

Every stage is a DAG run triggered through Airflow's REST API and waited for, so
what ran is what a user sees in the UI. Safe to re-run: ingestion moves a cursor,
the consumer upserts, dbt rebuilds, and the recap is sent once per user and week.
"""

from __future__ import annotations

import datetime as dt
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path

from weekly_wrapped import db
from weekly_wrapped.ingest import genres

from wrapped_dev.airflow_client import FINISHED, AirflowClient
from wrapped_dev.config import Settings
from wrapped_dev.stack import airflow

# How much history each demo listener's privacy export holds before the demo's "now": the recapped
# week and the 10 weeks before it, more than the 8 weeks (dbt var discovery_min_history_weeks) the
# recap needs before it may call an artist new, so the demo's discoveries are real ones.
EXPORT_WEEKS = 11
EXPORT_DAYS = EXPORT_WEEKS * 7
# More than the demo exports' distinct tracks (~1,500 for three listeners over EXPORT_DAYS).
DEMO_BACKFILL_PER_RUN = 5000
# The demo looks up as many artists' genres (most played first) as this many seconds of requests
# allow: the stack's fake MusicBrainz, serving as a mirror of one's own would, takes all ~150 in
# a few seconds; at musicbrainz.org's one a second, the 20 most played cover the listeners' tops.
DEMO_GENRE_SECONDS = 20
# How long the demo waits for announce_raw_plays to schedule dbt_build (it checks every 2 s).
ANNOUNCE_TIMEOUT = 120


def demo_clock(real_now: dt.datetime) -> dt.datetime:
    """The instant the demo plays at: the latest Monday 06:00 UTC, so last week is complete everywhere."""
    monday = (real_now - dt.timedelta(hours=6)).date()
    monday -= dt.timedelta(days=monday.weekday())
    return dt.datetime.combine(monday, dt.time(6), dt.timezone.utc)


def demo_week_start(clock: dt.datetime) -> dt.date:
    """The week the demo recaps: the one that ended just before the demo clock's Monday."""
    return clock.date() - dt.timedelta(days=7)


def export_records(seed: int, user, start_ms: int, end_ms: int) -> list[dict]:
    """A listener's plays as Spotify's privacy export writes them (`ts` to the second)."""
    from wrapped_dev.fakes import demo_listener as dl

    catalogue = dl.build_catalogue(seed)
    records = []
    for play in dl.plays_between(seed, user, start_ms, end_ms):
        track = catalogue.tracks[play.track_id]
        album = catalogue.albums[track.album_id]
        ts = dt.datetime.fromtimestamp(play.played_at_ms // 1000, dt.timezone.utc)
        records.append({
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "platform": "demo", "ms_played": play.ms_played,
            "conn_country": "DE", "master_metadata_track_name": track.name,
            "master_metadata_album_artist_name": catalogue.artists[track.artist_ids[0]].name,
            "master_metadata_album_album_name": album.name,
            "spotify_track_uri": f"spotify:track:{play.track_id}", "episode_name": None,
            "reason_start": "trackdone", "reason_end": "trackdone", "shuffle": False,
            "skipped": False, "offline": False, "incognito_mode": False,
        })
    return records


def write_demo_exports(settings: Settings, clock: dt.datetime, seed: int = 7, n_users: int = 3) -> dict[str, Path]:
    """One export folder per demo listener, covering EXPORT_DAYS up to the demo clock."""
    import json

    from wrapped_dev.fakes import demo_listener as dl

    end_ms = int(clock.timestamp() * 1000)
    start_ms = end_ms - EXPORT_DAYS * 86_400_000
    folders = {}
    for user in dl.demo_users(n_users):
        folder = settings.state_dir / "exports" / user.user_id
        folder.mkdir(parents=True, exist_ok=True)
        records = export_records(seed, user, start_ms, end_ms)
        (folder / "Streaming_History_Audio_demo_0.json").write_text(json.dumps(records, indent=1))
        folders[user.user_id] = folder
    return folders


def _set_fake_clock(settings: Settings, clock: dt.datetime) -> None:
    import json
    import urllib.request

    body = json.dumps({"now": clock.isoformat()}).encode()
    req = urllib.request.Request(f"{settings.spotify_accounts_base.rstrip('/')}/_control/clock", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=10).close()


def _say(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", flush=True)


def _run_dag(client: AirflowClient, dag_id: str, timeout: float, conf: dict | None = None) -> str:
    return _run_dags(client, dag_id, timeout, [conf])[0]


def _run_dags(client: AirflowClient, dag_id: str, timeout: float, confs: list[dict | None]) -> list[str]:
    """Trigger one run per conf, all at once (each waits in Airflow's queue, not for the one
    before it), and wait until every one has succeeded."""
    # Unpaused only when its turn comes: unpausing also starts the DAG's own scheduled run,
    # which must not run (and fail, and hold max_active_runs) before its inputs exist.
    client.wait_for_dag(dag_id)
    client.unpause(dag_id)
    run_ids = [client.trigger(dag_id, conf=conf) for conf in confs]
    for run_id in run_ids:
        _say(f"{dag_id}: triggered {run_id}")
    for run_id in run_ids:
        label = dag_id if len(run_ids) == 1 else f"{dag_id} {run_id}"
        state = client.wait_for_run(dag_id, run_id, timeout,
                                    on_progress=lambda s, label=label: _say(f"{label}: {s}"))
        if state != "success":
            failed = "; ".join(client.failed_tasks(dag_id, run_id))
            raise RuntimeError(f"{dag_id} run {run_id} ended {state}: {failed} "
                               f"(see the task logs in the Airflow UI)")
    return run_ids


def _build_marts(client: AirflowClient, settings: Settings, timeout: float, rebuild: bool) -> None:
    """Build the marts the way new plays do after the demo: announce_raw_plays updates RAW_PLAYS,
    which schedules dbt_build. A build of our own beside that one would wait for it (one run at
    a time) and then do the same work again. With no new plays (a re-run), the marts of the
    last successful build are current, unless `rebuild` (genres were looked up)."""
    from weekly_wrapped.streaming.supervisor import plays_committed_since

    for dag_id in ("dbt_build", "announce_raw_plays"):
        client.wait_for_dag(dag_id)
    runs = client.runs("dbt_build")
    active = [r["dag_run_id"] for r in runs if r["state"] not in FINISHED]
    if active:  # scheduled by plays announced earlier: its marts count first
        _say(f"dbt_build: waiting for {active[0]}")
        client.wait_for_run("dbt_build", active[0], timeout)
        runs = client.runs("dbt_build")
    announced = (client.latest_asset_event("announce_raw_plays") or {}).get("extra") or {}
    new_plays, _ = plays_committed_since(settings.warehouse_dsn, announced.get("committed_through"))
    client.unpause("dbt_build")
    client.unpause("announce_raw_plays")  # from now on new plays schedule dbt_build within seconds
    run_id = None
    if new_plays:
        _say(f"announce_raw_plays: {new_plays} new plays; waiting for the dbt_build run they schedule")
        run_id = client.wait_for_new_run("dbt_build", {r["dag_run_id"] for r in runs}, ANNOUNCE_TIMEOUT)
    elif not rebuild and runs and runs[0]["state"] == "success":
        _say(f"dbt_build: no new plays since {runs[0]['dag_run_id']}; the marts are current")
        return
    if run_id is None:
        run_id = client.trigger("dbt_build")
    _say(f"dbt_build: {run_id}")
    # The marts are ready once the build passed (`marts_built` announces them); the run's watcher
    # tasks go on showing that build in the UI a little longer.
    state = client.wait_for_task("dbt_build", run_id, "marts_built", timeout,
                                 on_progress=lambda s: _say(f"dbt_build: marts_built {s}"))
    if state != "success":
        failed = "; ".join(client.failed_tasks("dbt_build", run_id))
        raise RuntimeError(f"dbt_build run {run_id}: marts_built {state}: {failed} "
                           f"(see the task logs in the Airflow UI)")


def _query(settings: Settings, sql: str, params: tuple = ()) -> list[tuple]:
    with db.transaction(settings.warehouse_dsn) as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    return rows


def _wait_for_consumer(settings: Settings, timeout: float) -> None:
    """Wait until the streaming consumer has committed everything Kafka holds."""
    from weekly_wrapped.streaming import supervisor

    deadline = time.monotonic() + timeout
    said = 0.0
    while time.monotonic() < deadline:
        state = supervisor.status(settings.consumer)
        caught_up = state.running and state.lag == 0 and state.heartbeat_age_s is not None
        if caught_up or time.monotonic() - said >= 5:  # checks twice a second, says so every 5 s
            said = time.monotonic()
            last_batch = f"{state.heartbeat_age_s:.0f}s" if state.heartbeat_age_s is not None else "-"
            _say(f"consumer: running={state.running} lag={state.lag} last batch {last_batch} ago")
        if caught_up:
            return
        time.sleep(0.5)
    raise TimeoutError("the streaming consumer did not catch up; see `wrapped logs spark-consumer`")


def _html_copy(eml: Path) -> Path | None:
    from weekly_wrapped.recap.render import html_with_pictures_embedded

    message = BytesParser(policy=policy.default).parse(eml.open("rb"))
    content = html_with_pictures_embedded(message)  # the charts travel as cid: parts
    if content is None:
        return None
    html = eml.with_suffix(".html")
    html.write_text(content)
    return html


def _delivered(settings: Settings, week_start: dt.date) -> list[tuple[str, Path | None]]:
    """(recipient, .eml path) for every recap sent for the week."""
    sent = _query(settings, "select recipient, message_id from app.sent_emails where week_start = %s "
                            "and status = 'sent' order by recipient", (week_start,))
    files = sorted(settings.mail_dir.glob("*.eml"))
    found = []
    for recipient, message_id in sent:
        token = message_id.strip("<>")
        match = next((f for f in reversed(files) if token in f.read_text(errors="replace")), None)
        found.append((recipient, match))
    return found


def run_demo(settings: Settings, timeout: int = 900) -> int:
    from wrapped_dev.demo_users import onboard_demo_users
    from wrapped_dev.fakes import demo_listener as dl

    started = time.monotonic()
    clock = demo_clock(dt.datetime.now(dt.timezone.utc))
    week_start = demo_week_start(clock)
    _say(f"demo clock: {clock:%a %Y-%m-%d %H:%M} UTC; the recap covers the week of {week_start}")
    _set_fake_clock(settings, clock)
    client = AirflowClient(airflow.api_url(settings), "admin", airflow.admin_password(settings))
    # The consumer's JVM and Spark take 20 to 30 s to start: started now, it is up before the first
    # plays come (its first batch compiles Spark's generated code while the ingest still runs),
    # where the first spark_consumers run, one of a fresh Airflow's slow first tasks, started it
    # seconds later. From here on spark_consumers supervises it, as any consumer it finds running.
    from weekly_wrapped.streaming import supervisor

    if not supervisor.is_running(settings.consumer):
        _say(f"starting the streaming consumer (pid {supervisor.start(settings.consumer)}); "
             "the spark_consumers DAG supervises it")
    # spark_consumers runs continuously once unpaused (one long supervision run at a time), so it
    # is not triggered.
    client.wait_for_dag("spark_consumers")
    client.unpause("spark_consumers")
    # Unpausing spotify_ingest starts its hourly run (one run at a time): before anyone joined,
    # it has nothing to do and is soon out of the way of the demo's own run below.
    client.wait_for_dag("spotify_ingest")
    client.unpause("spotify_ingest")
    # The same for weekly_wrapped's hourly run: now, before any marts exist, it finds no week ready
    # and is done long before the demo's own run (which would otherwise wait behind it).
    client.wait_for_dag("weekly_wrapped")
    client.unpause("weekly_wrapped")
    _say("onboarding the demo listeners through the (fake) Spotify consent flow")
    # The demo's own three, not every listener the fake serves: `wrapped listeners add` (and the
    # ingest_fanout benchmark) grows the fake to a thousand, and it never shrinks while it runs.
    users = onboard_demo_users(settings, user_ids=[u.user_id for u in dl.demo_users()])
    _say(f"onboarded {len(users)} listeners: {', '.join(users)}")
    exports = write_demo_exports(settings, clock)

    for user_id, folder in exports.items():
        _say(f"importing {user_id}'s privacy export ({EXPORT_DAYS} days) from {folder}")
    _run_dags(client, "spotify_history_import", timeout,
              [{"user_id": user_id, "path": str(folder)} for user_id, folder in exports.items()])
    # One ingest run fetches the metadata of every exported track (the hourly default is a
    # bounded slice), so the first recap already counts the export's artists, albums and genres.
    _run_dag(client, "spotify_ingest", timeout, conf={"metadata_backfill_per_run": DEMO_BACKFILL_PER_RUN,
                                                      "musicbrainz_genres_per_run": 0})
    _wait_for_consumer(settings, timeout)
    # Genres are looked up for artists the warehouse holds, so only now; this run polls (nothing
    # new) and looks up genres, and writes them straight to app.artist_genres (no Kafka, no consumer).
    # A re-run finds the most played artists looked up already and skips it.
    budget = int(DEMO_GENRE_SECONDS * settings.musicbrainz_rps)
    missing = genres.not_looked_up_among_most_played(settings.warehouse_dsn, budget)
    if missing and settings.musicbrainz_genres:
        _say(f"looking up the genres of {missing} artists on the (fake) MusicBrainz, "
             f"{settings.musicbrainz_rps:g} a second")
        _run_dag(client, "spotify_ingest", timeout, conf={"metadata_backfill_per_run": 0,
                                                          "track_resolution_per_run": 0,
                                                          "musicbrainz_genres_per_run": missing})
    _build_marts(client, settings, timeout, rebuild=bool(missing and settings.musicbrainz_genres))
    _run_dag(client, "weekly_wrapped", timeout, conf={"week_start": week_start.isoformat()})
    # From now on the installation watches itself (consent e-mails, operator alerts) every hour.
    client.wait_for_dag("wrapped_watch")
    client.unpause("wrapped_watch")

    plays = _query(settings, "select count(*) from raw.plays")[0][0]
    fct = _query(settings, "select count(*) from marts.fct_plays")[0][0]
    no_album = _query(settings, "select count(*) from raw.tracks where album_id is null")[0][0]
    with_genres = _query(settings, "select count(*) from marts.dim_artist where cardinality(genres) > 0")[0][0]
    delivered = _delivered(settings, week_start)
    print()
    print(f"Weekly Wrapped demo finished in {time.monotonic() - started:.0f}s")
    print(f"  plays ingested (raw.plays):      {plays}")
    print(f"  rows in marts.fct_plays:         {fct}")
    print(f"  tracks still without an album:   {no_album}")
    print(f"  artists with genres (MusicBrainz): {with_genres}")
    print(f"  recaps for the week of {week_start}: {len(delivered)}")
    for recipient, eml in delivered:
        html = _html_copy(eml) if eml else None
        print(f"    {recipient}: {eml or '(sent; file not found in ' + str(settings.mail_dir) + ')'}")
        if html:
            print(f"      open in a browser: {html}")
    print(f"  Airflow UI: {airflow.api_url(settings)}  login: admin, "
          f"password in {airflow.password_file(settings)}")
    print("  stop everything: make down")
    return 0 if delivered else 1
