"""Session fixtures for the real services.

`stack` makes sure the local stack runs: it reuses services that are already up
(a developer's `wrapped up`) and starts the missing ones otherwise; what it
started, it stops at the end. A service that cannot start is an error, never a skip.
"""

from __future__ import annotations

import logging
import os

import psycopg2
import pytest

from wrapped_dev.config import Settings, load_settings

# py4j logs at INFO while the interpreter shuts down, after pytest closed its streams.
logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings):
    """The whole local stack: Postgres, Kafka, the fakes, Airflow.

    Starts what is not running; at the end stops only what it started (and the
    streaming consumer, if the session's tests started it), so a developer's stack stays up.
    """
    from weekly_wrapped.streaming import supervisor
    from wrapped_dev.cli import up
    from wrapped_dev.stack import airflow, fakes, kafka, postgres

    parts = [("Airflow", airflow), ("fakes", fakes), ("Kafka", kafka), ("PostgreSQL", postgres)]
    was_down = [(name, part) for name, part in parts if not part.is_running(settings)]
    consumer_was_running = supervisor.is_running(settings.consumer)
    up(settings)
    yield settings
    if os.environ.get("WRAPPED_KEEP_STACK") == "1":
        return
    if was_down and not consumer_was_running:
        supervisor.stop(settings.consumer)
    for name, part in was_down:  # in stop order: Airflow first, Postgres last
        part.stop(settings)


@pytest.fixture(scope="session")
def warehouse(stack: Settings):
    """A factory of autocommit psycopg2 connections to the warehouse; closes them at the end."""
    opened = []

    def connect(dsn: str | None = None):
        conn = psycopg2.connect(dsn or stack.warehouse_dsn)
        conn.autocommit = True
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Settings) -> str:
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
def airflow_test_env(tmp_path_factory) -> dict[str, str]:
    """Environment for child Airflow processes: a throwaway home with SQLite metadata and our DAGs."""
    import subprocess
    import sys

    from wrapped_dev.config import REPO_ROOT

    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
    }
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    return env
