"""Fan-out: one `spotify_ingest` run polls 1,000 listeners under the app-wide rate limit.

Against the running stack (`wrapped up`): the stack's fake Spotify serves 1,000 synthetic
listeners (`wrapped listeners add`, the real OAuth code flow, tokens encrypted in app.users)
and limits the whole app to `--rate` Web API requests a second (rolling 30 s window, 429 +
Retry-After over it, like Spotify). The real DAG is triggered through Airflow's REST API with
`spotify_rps` = the same rate; its side tasks (metadata backfill, track resolution, MusicBrainz
genres) get a budget of 0, so the run is the fan-out alone: plan, then one mapped task per batch.

ratio = the run's wall time (Airflow's start to end) ÷ (Web API requests the fake counted
during the run ÷ rate), target <= 1.5. A 429 during the run is reported (the budget, shared
through Postgres, should keep every batch under the limit).

Rate 5/s: the product's default for the real Spotify is 10/s (`wrapped_spotify_rps`), and a
development-mode app is allowed less than that over 30 s; at 5/s the ~1,000 requests take about
200 s of budget, long against Airflow's per-task start-up (seconds), as at Spotify's real rates,
and the bench takes about 7 min in all (onboarding and deletion included). Afterwards the 1,000 listeners are deleted again
(`wrapped listeners remove`), the fake's limit is lifted and the DAG paused if it was.

    .local/venv/bin/python bench/ingest_fanout.py [--listeners 1000] [--rate 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from wrapped_dev import listeners  # noqa: E402
from wrapped_dev.airflow_client import AirflowClient  # noqa: E402
from wrapped_dev.config import load_settings  # noqa: E402
from wrapped_dev.stack import airflow  # noqa: E402

DAG_ID = "spotify_ingest"
TARGET = 1.5


def fake_state(base: str) -> dict:
    r = requests.get(f"{base}/_control/state", timeout=10)
    r.raise_for_status()
    return r.json()


def set_rate_limit(base: str, per_second: float | None) -> None:
    requests.post(f"{base}/_control/rate_limit", json={"per_second": per_second}, timeout=10).raise_for_status()


def wait_until_idle(client: AirflowClient, timeout: float = 900) -> None:
    """Wait out runs already queued or running (unpausing may schedule one): the bench's run is alone."""
    deadline = time.monotonic() + timeout
    quiet_checks = 0
    while time.monotonic() < deadline:
        runs = client.request("GET", f"/dags/{DAG_ID}/dagRuns?state=queued&state=running")["dag_runs"]
        quiet_checks = 0 if runs else quiet_checks + 1
        if quiet_checks == 3:  # the scheduler takes a few seconds to create a run after unpausing
            return
        if runs:
            print(f"  waiting for {len(runs)} earlier run(s) of {DAG_ID}", flush=True)
        time.sleep(3)
    raise TimeoutError(f"{DAG_ID} still busy after {timeout:.0f}s")


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listeners", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=5.0, help="the app's Web API requests per second")
    parser.add_argument("--keep-listeners", action="store_true", help="do not delete the listeners afterwards")
    args = parser.parse_args(argv)
    settings = load_settings()
    fake = settings.spotify_accounts_base.rstrip("/")
    client = AirflowClient(airflow.api_url(settings), "admin", airflow.admin_password(settings))
    client.wait_for_dag(DAG_ID)
    was_paused = client.request("GET", f"/dags/{DAG_ID}")["is_paused"]

    set_rate_limit(fake, None)  # onboarding calls /me: not part of the run
    try:
        # Unpausing may schedule a run at once: let it poll only the listeners already there.
        client.unpause(DAG_ID)
        wait_until_idle(client)
        listeners.add_listeners(settings, args.listeners)
        set_rate_limit(fake, args.rate)
        time.sleep(1)  # let earlier requests leave nothing behind in the counts
        before = fake_state(fake)["counts"]
        conf = {"spotify_rps": args.rate, "metadata_backfill_per_run": 0, "track_resolution_per_run": 0,
                "musicbrainz_genres_per_run": 0}
        run_id = client.trigger(DAG_ID, conf)
        print(f"triggered {DAG_ID} {run_id} for {args.listeners} listeners at {args.rate:g} requests/s", flush=True)
        state = client.wait_for_run(DAG_ID, run_id, timeout=1800,
                                    on_progress=lambda s: print(f"  run {s}", flush=True))
        after = fake_state(fake)["counts"]
        quoted = requests.utils.quote(run_id, safe="")
        run = client.request("GET", f"/dags/{DAG_ID}/dagRuns/{quoted}")
        tasks = client.task_states(DAG_ID, run_id)
    finally:
        set_rate_limit(fake, None)
        if was_paused:
            client.request("PATCH", f"/dags/{DAG_ID}?update_mask=is_paused", {"is_paused": True})
        if not args.keep_listeners:
            listeners.remove_listeners(settings)

    requests_made = after.get("api requests", 0) - before.get("api requests", 0)
    throttled = after.get("api 429 rate limit", 0) - before.get("api 429 rate limit", 0)
    batches = [t for t in tasks if t["task_id"] == "ingest_batch"]
    wall = seconds_between(run["start_date"], run["end_date"])
    ideal = requests_made / args.rate
    first = min(t["start_date"] for t in batches)
    last = max(t["end_date"] for t in batches)
    print(f"run {state}: {len(batches)} mapped batches, {requests_made} Web API requests "
          f"({after.get('GET /v1/me/player/recently-played', 0) - before.get('GET /v1/me/player/recently-played', 0)}"
          f" recently-played), {throttled} answered 429")
    print(f"wall {wall:.1f}s (batches {seconds_between(first, last):.1f}s from the first start to the last end), "
          f"requests ÷ rate {ideal:.1f}s")
    if state != "success":
        print("failed tasks:", client.failed_tasks(DAG_ID, run_id))
    ratio = wall / ideal if ideal else float("inf")
    print(f"ingest_fanout: ratio={ratio:.2f} (target <= {TARGET})")
    return 0 if state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
