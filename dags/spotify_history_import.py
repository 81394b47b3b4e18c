"""spotify_history_import: backfill one listener's history from a Spotify privacy export.

Trigger it by hand with the user's Spotify id and the path of the export (one
`Streaming_History_Audio_*.json` file, or the folder holding them), as seen by the workers:

    airflow dags trigger spotify_history_import \
        --conf '{"user_id": "demo-ana", "path": "/data/exports/ana/"}'

The whole export is validated first: a broken file fails the run with the file and
line that broke it, and nothing is produced. Plays go to `spotify.plays` with
`source = "export"`; re-importing is safe (plays keep their natural key), and a play
also polled from the API is recognised as the same play by `fct_plays`. An export names its
tracks but not their albums or artists: the tracks ingestion has not produced yet are queued in
`app.metadata_backlog`, and `spotify_ingest` fetches their metadata (a bounded slice per hour).
Connections: `kafka_default`, `postgres_default`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import Param, dag, task

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
                      description="export file, or folder of Streaming_History_Audio_*.json"),
    },
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
        print(f"imported {summary}")
        return summary

    import_export()


spotify_history_import()
