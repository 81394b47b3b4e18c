"""Fixtures for the recap tests: a sample wrapped_weekly row, the fake Gemini server, the
SMTP sink with an Airflow `smtp_default` connection pointing at it, and a private
Postgres database with the real app schema and a marts.wrapped_weekly stand-in.

The fakes run in-process on free ports, so these tests never disturb the shared stack.
The stand-in mart lives only in a database created (and dropped) here, never in `wrapped`.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import psycopg2
import pytest

from recap_helpers import make_row, mart_contract_columns
from tests.support.ports import free_port
from tests.support.postgres import private_database

from wrapped_dev.fakes.gemini_server import make_server
from wrapped_dev.fakes.smtp_sink import start_sink

GEMINI_KEY = "test-gemini-key"


@pytest.fixture
def row() -> dict:
    return make_row()


@pytest.fixture(scope="session")
def gemini_server():
    """The fake Gemini on a free port, serving in a thread; yields the server."""
    server = make_server("127.0.0.1", 0, GEMINI_KEY)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def gemini(gemini_server):
    """Connection-like settings for the fake Gemini, whose switches are reset for each test."""
    from weekly_wrapped.airflow.connections import GeminiApi

    gemini_server.state.configure({"reset": True})
    return GeminiApi(GEMINI_KEY, "gemini-2.5-flash", f"http://127.0.0.1:{gemini_server.server_port}")


class Sink:
    """The SMTP sink on a fixed port, which a test can take down and bring back up."""

    def __init__(self, directory, port):
        self.directory, self.port = directory, port
        self.controller = None

    def start(self, lose_replies: int = 0) -> None:
        self.controller = start_sink(self.directory, "127.0.0.1", self.port, lose_replies)

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def lose_replies(self, n: int) -> None:
        """The next n messages are stored, then the connection drops before the server's reply."""
        self.controller.handler.lose_replies = n

    def messages(self) -> list:
        return sorted(self.directory.glob("*.eml"))


@pytest.fixture
def sink(tmp_path, monkeypatch):
    """The SMTP sink on a free port, and `smtp_default` (env connection) pointing at it."""
    port = free_port()
    handle = Sink(tmp_path / "mail", port)
    handle.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "extra": {
                    "disable_ssl": True,
                    "disable_tls": True,
                    "from_email": "Weekly Wrapped <wrapped@localhost>",
                    "timeout": 10,
                    # The hook retries connecting 5 times by default; "down" should fail at once.
                    "retry_limit": 0,
                },
            }
        ),
    )
    yield handle
    handle.stop()


@pytest.fixture
def mailbox(sink):
    """The directory the sink's .eml files land in."""
    return sink.directory


def wrapped_weekly_stand_in() -> str:
    """DDL for a marts.wrapped_weekly with exactly the columns and types of the dbt contract."""
    columns = mart_contract_columns()
    body = ",\n    ".join(f"{name} {data_type}" for name, data_type in columns.items())
    return f"create schema if not exists marts;\ncreate table marts.wrapped_weekly (\n    {body}\n);"


@pytest.fixture(scope="session")
def recap_db(postgres):
    """DSN of a private database on the warehouse's server: the real schema.sql plus a
    marts.wrapped_weekly stand-in."""
    with private_database(postgres.dsn, "wrapped_recap_test", schema=True) as (_, dsn):
        conn = psycopg2.connect(dsn)
        with conn, conn.cursor() as cur:
            cur.execute(wrapped_weekly_stand_in())
        conn.close()
        yield dsn


@pytest.fixture
def db(recap_db):
    """An autocommit connection to the private database; empties the recap's tables after the test."""
    conn = psycopg2.connect(recap_db)
    conn.autocommit = True
    yield conn
    with conn.cursor() as cur:
        cur.execute("truncate app.sent_emails, marts.wrapped_weekly, app.ingest_outcomes, raw.plays, app.users cascade")
    conn.close()


def mark_week_complete(conn, user_id: str, polled_at: datetime, newest_play_at: datetime | None = None) -> None:
    """What ingestion leaves once a user's week is complete: a successful poll at `polled_at`,
    the cursor at the newest play, and that play loaded into raw.plays by the consumer."""
    newest = newest_play_at or polled_at - timedelta(hours=1)
    with conn.cursor() as cur:
        cur.execute("insert into app.ingest_outcomes (user_id, outcome, plays, created_at) values (%s, 'ok', 1, %s)",
                    (user_id, polled_at))
        cur.execute(
            "insert into app.ingest_cursors (user_id, after_ms, updated_at) values (%s, %s, %s) "
            "on conflict (user_id) do update set after_ms = excluded.after_ms",
            (user_id, int(newest.timestamp() * 1000), polled_at))
        cur.execute(
            "insert into raw.plays (user_id, played_at, track_id, source, ingested_at, loaded_at) "
            "values (%s, %s, 'track-newest', 'api', %s, %s) on conflict do nothing",
            (user_id, newest, polled_at, polled_at + timedelta(seconds=5)))


@pytest.fixture
def week_complete(db):
    """mark_week_complete on the test database."""
    return lambda user_id, polled_at, newest_play_at=None: mark_week_complete(db, user_id, polled_at, newest_play_at)
