"""Recap throughput: N users' recaps rendered and sent through the `weekly_wrapped` DAG.

A real run of the running stack's Airflow, triggered and watched through its REST API,
against a private warehouse database (the real schema plus a marts.wrapped_weekly stand-in
with one complete week per user, in five time zones), a private fake Gemini that answers
each request after 1 s, and a private SMTP sink. The run reaches them through Connections
created through the API for the run (the DAG's `*_conn_id` params) and deleted afterwards,
so the stack's own warehouse, mail and Gemini are untouched. Every e-mail is the real one,
pictures included (listening clock, minutes per day, top artists as PNGs by Content-ID).

The wall time is the run's own, from its start to its success as Airflow records them (the
time from the trigger is printed too: a run of the stack's own may hold it queued first,
max_active_runs=1). ratio = wall time / 120 s, target <= 1. Also prints the peak resident
memory of Airflow's processes during the run. The DAG is unpaused for the run and paused
again afterwards if it was, which also lets its hourly run of the stack's own warehouse happen.

    .local/venv/bin/python bench/recap_throughput.py [--users 1000] [--gemini-delay 1.0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "recap"))

import psycopg2  # noqa: E402
from psycopg2.extras import execute_values  # noqa: E402

from recap_helpers import make_row, mart_contract_columns  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.postgres import private_database  # noqa: E402
from wrapped_dev.airflow_client import AirflowClient  # noqa: E402
from wrapped_dev.config import load_settings  # noqa: E402
from wrapped_dev.fakes.gemini_server import make_server  # noqa: E402
from wrapped_dev.fakes.smtp_sink import start_sink  # noqa: E402
from wrapped_dev.stack import airflow  # noqa: E402

TARGET_S = 120.0
DAG_ID = "weekly_wrapped"
WEEK = date(2026, 11, 16)
ZONES = ["Europe/Berlin", "America/Los_Angeles", "Asia/Tokyo", "UTC", "Australia/Sydney"]
GEMINI_KEY = "bench-gemini-key"
CONN = {"warehouse": "wrapped_bench_warehouse", "gemini": "wrapped_bench_gemini", "smtp": "wrapped_bench_smtp"}


def airflow_rss_mib() -> float:
    """Resident memory of every Airflow process (scheduler, API server, task runners, ...)."""
    total = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"airflow" not in (proc / "cmdline").read_bytes():
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total / 1024


def seed(dsn: str, n: int) -> list[str]:
    """N active users, each with the stand-in mart's row for WEEK and a poll after it ended."""
    columns = mart_contract_columns()
    users = [f"bench-recap-{i:05d}" for i in range(n)]
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("create schema if not exists marts")
        body = ", ".join(f"{name} {data_type}" for name, data_type in columns.items())
        cur.execute(f"create table marts.wrapped_weekly ({body})")
        execute_values(cur, "insert into app.users (user_id, display_name, email, time_zone, email_confirmed_at) "
                            "values %s",
                       [(u, f"Listener {i}", f"{u}@example.com", ZONES[i % len(ZONES)], "now")
                        for i, u in enumerate(users)])
        rows = []
        for i, user in enumerate(users):
            row = make_row(user_id=user, user_week_id=f"{user}|{WEEK}", week_start=WEEK, time_zone=ZONES[i % len(ZONES)])
            rows.append(tuple(json.dumps(row[c]) if isinstance(row.get(c), (list, dict)) else row.get(c)
                              for c in columns))
        execute_values(cur, f"insert into marts.wrapped_weekly ({', '.join(columns)}) values %s", rows)
        execute_values(cur, "insert into app.ingest_outcomes (user_id, outcome, plays) values %s",
                       [(u, "ok", 1) for u in users])
    conn.close()
    return users


def connections(settings, dsn_db: str, gemini_port: int, smtp_port: int) -> dict[str, dict]:
    return {
        CONN["warehouse"]: {"conn_type": "postgres", "host": settings.pg_host, "port": settings.pg_port,
                            "login": settings.pg_user, "password": settings.pg_password, "schema": dsn_db},
        CONN["gemini"]: {"conn_type": "http", "password": GEMINI_KEY,
                         "extra": json.dumps({"model": "gemini-2.5-flash",
                                              "base_url": f"http://127.0.0.1:{gemini_port}"})},
        CONN["smtp"]: {"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port,
                       "extra": json.dumps({"disable_ssl": True, "disable_tls": True, "timeout": 30,
                                            "from_email": "Weekly Wrapped <wrapped@localhost>"})},
    }


def marts_built_after_week(client: AirflowClient) -> None:
    """The run sends a week once a dbt build is recorded after it; record one if the stack has none."""
    asset = client.request("GET", "/assets?name_pattern=wrapped_marts")["assets"][0]
    if not (asset.get("last_asset_event") or {}).get("timestamp"):
        client.request("POST", "/assets/events", {"asset_id": asset["id"], "extra": {"from": "recap_throughput"}})


def wait_for_params(client: AirflowClient, timeout: float) -> None:
    """Until the dag-processor has parsed a DAG version with the `*_conn_id` params."""
    deadline = time.monotonic() + timeout
    while "warehouse_conn_id" not in (client.request("GET", f"/dags/{DAG_ID}/details").get("params") or {}):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{DAG_ID} in Airflow has no warehouse_conn_id param: an older version of the DAG?")
        time.sleep(2)


def run_times(client: AirflowClient, run_id: str) -> float:
    """Seconds from the run's start to its end, as Airflow recorded them."""
    import urllib.parse

    run = client.request("GET", f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}")
    start, end = (datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("start_date", "end_date"))
    return (end - start).total_seconds()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--gemini-delay", type=float, default=1.0, help="seconds the fake Gemini takes per answer")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)
    settings = load_settings()
    client = AirflowClient(airflow.api_url(settings), "admin", airflow.admin_password(settings))
    client.wait_for_dag(DAG_ID)
    wait_for_params(client, 180)

    gemini = make_server("127.0.0.1", 0, GEMINI_KEY)
    gemini.state.configure({"delay_s": args.gemini_delay})
    threading.Thread(target=gemini.serve_forever, daemon=True).start()
    mail_tmp = tempfile.TemporaryDirectory(prefix="recap_throughput_mail_")
    mail_dir = Path(mail_tmp.name)
    smtp_port = free_port()
    sink = start_sink(mail_dir, "127.0.0.1", smtp_port)
    was_paused = client.request("GET", f"/dags/{DAG_ID}")["is_paused"]
    try:
        with private_database(settings.warehouse_dsn, "wrapped_bench_recap", schema=True) as (name, dsn):
            users = seed(dsn, args.users)
            print(f"seeded {len(users)} users with a week to recap in database {name}")
            for conn_id, body in connections(settings, name, gemini.server_port, smtp_port).items():
                try:
                    client.request("DELETE", f"/connections/{conn_id}")
                except Exception:
                    pass
                client.request("POST", "/connections", {"connection_id": conn_id, **body})
            marts_built_after_week(client)
            if was_paused:
                client.unpause(DAG_ID)

            peak = baseline = airflow_rss_mib()
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, airflow_rss_mib())
                    time.sleep(0.5)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            conf = {"week_start": WEEK.isoformat(), "warehouse_conn_id": CONN["warehouse"],
                    "gemini_conn_id": CONN["gemini"], "smtp_conn_id": CONN["smtp"]}
            started = time.monotonic()
            run_id = client.trigger(DAG_ID, conf=conf)
            deadline = started + args.timeout
            state = None
            while time.monotonic() < deadline:
                state = client.run_state(DAG_ID, run_id)
                if state in ("success", "failed"):
                    break
                time.sleep(0.5)
            since_trigger = time.monotonic() - started
            done.set()
            sampler.join()
            if state != "success":
                print(f"run {run_id} ended {state}: {client.failed_tasks(DAG_ID, run_id)}", file=sys.stderr)
                return 1

            with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
                cur.execute("select status, count(*) from app.sent_emails group by status")
                statuses = dict(cur.fetchall())
            conn.close()
            files = sorted(mail_dir.glob("*.eml"))
            pictures = sum(1 for f in files
                           if sum(1 for p in message_from_bytes(f.read_bytes(), policy=policy.default).walk()
                                  if p.get_content_type() == "image/png") >= 3)
            calls = gemini.state.stats()["by_status"]
            tasks = client.task_states(DAG_ID, run_id)
            batches = sum(1 for t in tasks if t["task_id"] == "send_recaps")
            print(f"run {run_id}: {batches} send_recaps tasks; sent_emails by status {statuses}; "
                  f"{len(files)} e-mails in the sink, {pictures} with their 3 pictures; gemini calls {calls}")
            if statuses != {"sent": len(users)} or len(files) != len(users) or pictures != len(users):
                print("not every user got exactly one complete e-mail", file=sys.stderr)
                return 1
            # The run's own start to end: a scheduled run of the stack's DAG may hold it queued first.
            wall = run_times(client, run_id)
            print(f"{len(users)} recaps in {wall:.1f}s from the run's start ({since_trigger:.1f}s from the trigger)"
                  f" ({len(users) / wall:.1f}/s) with a {args.gemini_delay:g}s Gemini; "
                  f"peak Airflow memory {peak:.0f} MiB (before the run {baseline:.0f} MiB)")
            print(f"recap_throughput: ratio={wall / TARGET_S:.2f} (target <= 1)")
            return 0
    finally:
        for conn_id in CONN.values():
            try:
                client.request("DELETE", f"/connections/{conn_id}")
            except Exception:
                pass
        if was_paused:
            client.request("PATCH", f"/dags/{DAG_ID}?update_mask=is_paused", {"is_paused": True})
        sink.stop()
        gemini.shutdown()
        mail_tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
