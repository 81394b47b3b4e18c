"""A small client for Airflow 3's REST API (/api/v2), used by the demo and the tests.

Triggering through the API means what ran is exactly what a user sees in the UI.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

FINISHED = {"success", "failed"}
TASK_ENDED = {"success", "failed", "skipped", "upstream_failed", "removed"}
# How often the waits below ask: a run or task that ended is noticed within this.
POLL_S = 0.5


class AirflowError(RuntimeError):
    pass


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._token: str | None = None

    def _login(self) -> str:
        body = json.dumps({"username": self._username, "password": self._password}).encode()
        req = urllib.request.Request(f"{self.base_url}/auth/token", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)["access_token"]

    def request(self, method: str, path: str, body: Any = None) -> Any:
        if self._token is None:
            self._token = self._login()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.base_url}/api/v2{path}", data=data, method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._token}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw = r.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            if e.code == 401 and self._token is not None:
                self._token = None  # expired: log in again once
                return self.request(method, path, body)
            raise AirflowError(f"{method} {path}: HTTP {e.code}: {e.read().decode(errors='replace')[:500]}") from e

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Wait until the dag-processor has parsed the DAG (new files take a few seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                dag = self.request("GET", f"/dags/{dag_id}")
                if dag:
                    return
            except AirflowError as e:
                if "404" not in str(e) or time.monotonic() > deadline:
                    raise
            time.sleep(POLL_S)

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}?update_mask=is_paused", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None, logical_date: str | None = None) -> str:
        run = self.request("POST", f"/dags/{dag_id}/dagRuns",
                           {"logical_date": logical_date, "conf": conf or {}})
        return run["dag_run_id"]

    def runs(self, dag_id: str, limit: int = 20) -> list[dict]:
        """The DAG's latest runs, newest first."""
        return self.request("GET", f"/dags/{dag_id}/dagRuns?order_by=-run_after&limit={limit}")["dag_runs"]

    def latest_asset_event(self, source_dag_id: str) -> dict | None:
        """The newest asset event a DAG's tasks emitted (with its `extra`), or None."""
        events = self.request("GET", f"/assets/events?source_dag_id={source_dag_id}&order_by=-timestamp&limit=1")
        return events["asset_events"][0] if events["asset_events"] else None

    def wait_for_new_run(self, dag_id: str, known: set[str], timeout: float) -> str | None:
        """The id of a run of `dag_id` not in `known` once one appears, or None after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = [r["dag_run_id"] for r in self.runs(dag_id) if r["dag_run_id"] not in known]
            if new:
                return new[0]
            time.sleep(POLL_S)
        return None

    def run_state(self, dag_id: str, run_id: str) -> str:
        quoted = urllib.parse.quote(run_id, safe="")
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{quoted}")["state"]

    def task_states(self, dag_id: str, run_id: str) -> list[dict]:
        quoted = urllib.parse.quote(run_id, safe="")
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances?limit=1000")["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600, on_progress=None) -> str:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if on_progress and state != last:
                on_progress(state)
            last = state
            if state in FINISHED:
                return state
            time.sleep(POLL_S)
        raise AirflowError(f"{dag_id} run {run_id} still {last} after {timeout:.0f}s")

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        quoted = urllib.parse.quote(run_id, safe="")
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}")["state"]

    def wait_for_task(self, dag_id: str, run_id: str, task_id: str, timeout: float = 600, on_progress=None) -> str:
        """The state of one task of a run once it has ended (or its run ended without it)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            state = self.task_state(dag_id, run_id, task_id)
            if on_progress and state != last:
                on_progress(state)
            last = state
            if state in TASK_ENDED:
                return state
            if self.run_state(dag_id, run_id) in FINISHED:
                return str(state)
            time.sleep(POLL_S)
        raise AirflowError(f"{dag_id} run {run_id}: {task_id} still {last} after {timeout:.0f}s")

    def failed_tasks(self, dag_id: str, run_id: str) -> list[str]:
        return [f"{t['task_id']}[{t.get('map_index', -1)}]: {t['state']}"
                for t in self.task_states(dag_id, run_id) if t["state"] not in ("success", "skipped")]
