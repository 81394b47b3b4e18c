"""Airflow 3 as four processes: api-server, scheduler, dag-processor, triggerer.

LocalExecutor, metadata in the stack's Postgres. Each component is its own
service (process group), so `down` stops the task processes they spawned too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

from wrapped_dev.config import Settings
from weekly_wrapped.streaming import process
from wrapped_dev.stack.env import airflow_home, service_env, venv_bin
from weekly_wrapped.streaming.process import Service

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def services(settings: Settings) -> list[Service]:
    return [
        Service(f"airflow-{c}", settings.state_dir / "run", settings.state_dir / "logs")
        for c in COMPONENTS
    ]


def api_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.airflow_port}"


def password_file(settings: Settings) -> Path:
    return airflow_home(settings) / "passwords.json"


def admin_password(settings: Settings) -> str:
    return json.loads(password_file(settings).read_text())["admin"]


def health(settings: Settings) -> dict | None:
    try:
        with urllib.request.urlopen(f"{api_url(settings)}/api/v2/monitor/health", timeout=3) as r:
            return json.load(r)
    except Exception:
        return None


def _healthy(settings: Settings) -> bool:
    h = health(settings)
    if not h:
        return False
    return all(h.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler", "dag_processor", "triggerer"))


def migrate_in_background(settings: Settings) -> subprocess.Popen:
    """Start `airflow db migrate` (Postgres must be up); `start` waits for it."""
    airflow_home(settings).mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([str(venv_bin() / "airflow"), "db", "migrate"], env=service_env(settings),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def migrate(settings: Settings, migration: subprocess.Popen | None = None) -> None:
    migration = migration or migrate_in_background(settings)
    output, _ = migration.communicate()
    if migration.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{output[-6000:]}")


def start(settings: Settings, migration: subprocess.Popen | None = None) -> None:
    """Migrate (or wait for the migration `migrate_in_background` began), start, wait until healthy."""
    migrate(settings, migration)
    env = service_env(settings)
    airflow = str(venv_bin() / "airflow")
    for svc, component in zip(services(settings), COMPONENTS):
        argv = [airflow, component]
        if component == "api-server":
            argv += ["--port", str(settings.airflow_port), "--host", "127.0.0.1"]
        process.start(svc, argv, env, cwd=airflow_home(settings))
    process.wait_until(lambda: _healthy(settings), "Airflow to report healthy", 180, services(settings)[0])


def is_running(settings: Settings) -> bool:
    return all(process.is_running(s) for s in services(settings))


def stop(settings: Settings) -> bool:
    """Stop the components (the api-server last), their task processes, and end the runs those
    were working on."""
    api_server, *others = services(settings)
    healthy = _healthy(settings)
    stopped = False
    for svc in reversed(others):  # the scheduler among them: no new run or task from here on
        # The scheduler's executor waits for its running tasks before it exits, and the long-lived
        # watches (spark_consumers, announce_raw_plays) run for half an hour: it always waited out
        # the 30 s. Its tasks are stopped right after it anyway (_stop_orphaned_tasks).
        stopped |= process.stop(svc, timeout=5 if svc.name == "airflow-scheduler" else 30)
    stopped |= _stop_orphaned_tasks(settings)
    if healthy:
        _fail_unfinished_runs(settings)
    return process.stop(api_server, timeout=30) or stopped


def _fail_unfinished_runs(settings: Settings) -> None:
    """Mark failed the runs the stop cut short. Their task processes are gone, but Airflow would
    find that out only after its heartbeat timeout (5 minutes or more after the next `up`),
    and meanwhile each such run holds its DAG's one active run: the demo waited that long for
    a dbt_build cut short by `down`. Queued runs are left to start after `up`."""
    from urllib.parse import quote

    from wrapped_dev.airflow_client import AirflowClient, AirflowError

    client = AirflowClient(api_url(settings), "admin", admin_password(settings))
    try:
        for run in client.request("GET", "/dags/~/dagRuns?state=running&limit=100")["dag_runs"]:
            client.request("PATCH", f"/dags/{run['dag_id']}/dagRuns/{quote(run['dag_run_id'], safe='')}",
                           {"state": "failed"})
    except (AirflowError, OSError) as error:  # best effort: Airflow still ends them, later
        print(f"    (could not end the unfinished runs: {error})", flush=True)


def _stop_orphaned_tasks(settings: Settings) -> bool:
    """Kill the task processes that outlived the scheduler (each leads a process group of its
    own, and the long-lived watches would go on, even restart the consumer): processes titled
    `airflow worker` working in this stack's AIRFLOW_HOME, so another stack's tasks are left alone.
    (Their environment is no marker: setting the process title overwrites what /proc shows of it.)"""
    home = os.path.realpath(airflow_home(settings))
    groups = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if ((proc / "cmdline").read_bytes().startswith(b"airflow worker")
                    and os.readlink(proc / "cwd") == home):
                groups.add(os.getpgid(int(proc.name)))
        except (OSError, ProcessLookupError):
            continue  # gone meanwhile, or not ours to read
    groups.discard(os.getpgid(0))
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return bool(groups)
