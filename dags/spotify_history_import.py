"""spotify_history_import: backfill one listener's history from a Spotify privacy export.

Trigger it by hand with the user's Spotify id and the path of the export as the workers see it:
the zip Spotify sends (`my_spotify_data.zip`, `my_spotify_extended_streaming_history.zip`) as
is, the folder it unpacks to, or single files (`Streaming_History_Audio_*.json`,
`endsong_*.json`, `StreamingHistory*.json`):

    airflow dags trigger spotify_history_import \
        --conf '{"user_id": "demo-ana", "path": "/data/exports/ana/my_spotify_data.zip"}'

The whole export is validated first: a broken file fails the run, without retries, with the file
(and zip member) and the line and column that broke it, and nothing is produced. Plays go to
`spotify.plays` with `source = "export"`, plays under 30 s as skip events; podcast, audiobook
and video rows, rows without a track and exact duplicates are skipped and counted. Artist and
album names from the export are produced at once as name-only entities; real track ids are queued
in `app.metadata_backlog`, account-data names in `app.track_resolutions`. Re-importing is safe
(plays keep their natural key). The report (files, rows, plays, skips, skipped by reason, time
range, queued) is printed in the task log and returned as XCom.
All of it is `weekly_wrapped.ingest.history_import.import_export`; this file only wires it.
Connections: `kafka_default`, `postgres_default`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import Param, dag, task

from weekly_wrapped.airflow.alerting import AlertOnFailure, ResolveOnSuccess
from weekly_wrapped.airflow.assets import KAFKA_PLAYS

DAG_ID = Path(__file__).stem


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["weekly-wrapped", "ingest", "backfill"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "user_id": Param("", type="string", minLength=1, description="the listener's Spotify user id"),
        "path": Param("", type="string", minLength=1,
                      description="the export as the workers see it: the zip Spotify sends, its unpacked folder, or one file"),
    },
    on_failure_callback=AlertOnFailure(),  # one e-mail to the operator per failing DAG
    on_success_callback=ResolveOnSuccess(),
    doc_md=__doc__,
)
def spotify_history_import():
    @task(outlets=[KAFKA_PLAYS])
    def import_export(params: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from weekly_wrapped.airflow import connections as conns
        from weekly_wrapped.ingest.history_import import ExportError, import_export

        try:
            summary = import_export(Path(params["path"]), params["user_id"],
                                    conns.warehouse_dsn(), conns.kafka_config())
        except ExportError as e:
            # A broken file stays broken: fail now, without retries.
            raise AirflowFailException(f"export refused: {e}") from None
        print("export imported:", json.dumps(summary, indent=1))
        return summary

    import_export()


spotify_history_import()
