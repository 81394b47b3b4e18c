"""Fixtures for the recap tests: a sample wrapped_weekly row, the fake Gemini server, the
SMTP sink with an Airflow `smtp_default` connection pointing at it, and a private
Postgres database with the real app schema and a marts.wrapped_weekly stand-in.

The fakes run in-process on free ports, so these tests never disturb the shared stack.
The stand-in mart lives only in a database created (and dropped) here, never in `wrapped`.
"""

from __future__ import annotations

import json
import threading

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


@pytest.fixture
def mailbox(tmp_path, monkeypatch):
    """The SMTP sink on a free port, and `smtp_default` (env connection) pointing at it.

    Yields the directory the .eml files land in.
    """
    directory = tmp_path / "mail"
    port = free_port()
    controller = start_sink(directory, "127.0.0.1", port)
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
                },
            }
        ),
    )
    yield directory
    controller.stop()


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
        cur.execute("truncate app.sent_emails, marts.wrapped_weekly, app.users cascade")
    conn.close()
