"""Importing a Spotify privacy export from one's page: the uploaded zip is saved under the import
folder (Variable `wrapped_import_dir`, a folder the api-server and the workers share), the
`spotify_history_import` DAG is triggered for that user and file, and the page shows the run's
state and, once it succeeded, its report (the task's XCom). Once the run has finished, the page
deletes the saved file (`remove_upload`): it holds more than plays.

`app.page_imports` records which runs belong to whom, so a page only ever shows its own user's
imports. `AirflowImports` runs inside Airflow's api-server (it uses Airflow's metadata database
as the REST API does); the page takes any object with the same two methods, so tests can give it
another.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Protocol

from weekly_wrapped import db

DAG_ID = "spotify_history_import"
TASK_ID = "import_export"
MAX_UPLOAD_BYTES = 2 * 1024 ** 3  # Spotify's extended history zips are tens of MB; refuse anything absurd
ZIP_MAGIC = b"PK\x03\x04"
FINISHED = ("success", "failed")


class UploadError(ValueError):
    """Not a zip, empty, or too large (the message is for the person uploading)."""


@dataclass(frozen=True)
class ImportRun:
    run_id: str
    uploaded_at: datetime
    state: str  # queued, running, success, failed (Airflow's DagRun states), or "unknown"
    report: dict | None  # the import's report once it succeeded


class Runs(Protocol):
    def trigger(self, user_id: str, path: str) -> str: ...
    def state(self, run_id: str) -> tuple[str, dict | None]: ...


def save_upload(import_dir: str, user_id: str, source: BinaryIO) -> Path:
    """Copy the upload to `<import_dir>/<random>/export.zip` (the folder name says nothing about the
    user); UploadError unless it is a non-empty zip under MAX_UPLOAD_BYTES."""
    head = source.read(len(ZIP_MAGIC))
    if head != ZIP_MAGIC:
        raise UploadError("That file is not a zip. Upload the zip Spotify sent you, as it is.")
    folder = Path(import_dir) / secrets.token_hex(16)
    folder.mkdir(parents=True, mode=0o700)
    path = folder / "export.zip"
    size = len(head)
    with open(path, "wb") as out:
        out.write(head)
        while chunk := source.read(1024 * 1024):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                out.close()
                path.unlink()
                folder.rmdir()
                raise UploadError("That file is too large for an export.")
            out.write(chunk)
    return path


def start_import(dsn: str, runs: Runs, user_id: str, path: Path) -> str:
    """Trigger the import of `path` for `user_id` and record the run as theirs; returns the run id."""
    run_id = runs.trigger(user_id, str(path))
    with db.transaction(dsn) as cur:
        cur.execute("insert into app.page_imports (run_id, user_id, path) values (%s, %s, %s)",
                    (run_id, user_id, str(path)))
    return run_id


def recent_imports(dsn: str, runs: Runs, user_id: str, limit: int = 3) -> list[ImportRun]:
    """The user's newest imports with their runs' states (newest first)."""
    with db.transaction(dsn) as cur:
        cur.execute("select run_id, uploaded_at, path from app.page_imports where user_id = %s "
                    "order by uploaded_at desc limit %s", (user_id, limit))
        rows = cur.fetchall()
    found = []
    for run_id, uploaded_at, path in rows:
        try:
            state, report = runs.state(run_id)
        except Exception:  # Airflow's database unreachable: the page still shows the upload
            state, report = "unknown", None
        if state in FINISHED:
            remove_upload(path)
        found.append(ImportRun(run_id, uploaded_at, state, report))
    return found


def remove_upload(path: str) -> None:
    """Delete a saved export once its run finished: it holds more than the plays (IP addresses,
    devices), and the warehouse has what was imported. Best effort: a missing file is fine."""
    upload = Path(path)
    upload.unlink(missing_ok=True)
    try:
        upload.parent.rmdir()
    except OSError:
        pass


class AirflowImports:
    """Triggers and reads `spotify_history_import` runs through Airflow's own models (api-server only)."""

    def trigger(self, user_id: str, path: str) -> str:
        from airflow.api.common.trigger_dag import trigger_dag
        from airflow.utils.types import DagRunTriggeredByType

        run_id = f"page_import__{datetime.now(timezone.utc):%Y%m%dT%H%M%S}_{secrets.token_hex(4)}"
        # REST_API: a web request asked for it, as the REST API's trigger endpoint records it.
        trigger_dag(DAG_ID, triggered_by=DagRunTriggeredByType.REST_API, run_id=run_id,
                    conf={"user_id": user_id, "path": path}, note="uploaded on the listener's page")
        return run_id

    def state(self, run_id: str) -> tuple[str, dict | None]:
        from sqlalchemy import select

        from airflow.models.dagrun import DagRun
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            run = session.scalar(select(DagRun).where(DagRun.dag_id == DAG_ID, DagRun.run_id == run_id))
            if run is None:
                return "unknown", None
            state = str(run.state.value if hasattr(run.state, "value") else run.state)
            if state != "success":
                return state, None
            row = session.scalars(XComModel.get_many(run_id=run_id, key="return_value", task_ids=TASK_ID,
                                                     dag_ids=DAG_ID)).first()
            report = XComModel.deserialize_value(row) if row is not None else None
            return state, report if isinstance(report, dict) else None
