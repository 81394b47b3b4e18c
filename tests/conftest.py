"""Session fixtures, one per real service: `postgres`, `kafka`, `spark`, `fakes`, `airflow`.

Each takes its endpoint from the environment when one is given there (WRAPPED_PG_HOST /
WRAPPED_PG_PORT, WRAPPED_KAFKA_BOOTSTRAP, WRAPPED_SPARK_MASTER: the variables the dev
`Settings` read), else reuses the local service if it runs (a developer's `wrapped up`),
else starts just that service. A test asks for the narrowest one it needs, so a test of
the warehouse never starts Airflow. A service that cannot be reached or started is an
error, never a skip. At the end each fixture stops what it started, and only that
(unless WRAPPED_KEEP_STACK=1). `stack` is all of them, for the end-to-end demo.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

# `tests.support` is importable from every test (and from bench/, which does the same).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wrapped_dev.config import Settings, load_settings  # noqa: E402

# py4j logs at INFO while the interpreter shuts down, after pytest closed its streams.
logging.getLogger("py4j").setLevel(logging.WARNING)


def _keep_running() -> bool:
    return os.environ.get("WRAPPED_KEEP_STACK") == "1"


def _given(*names: str) -> bool:
    """Whether the environment names this endpoint (then it must answer: we do not start it)."""
    return any(os.environ.get(name) for name in names)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@dataclass(frozen=True)
class Postgres:
    """The warehouse's server; `dsn` is the warehouse database (also the admin DSN for private ones)."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @property
    def dsn(self) -> str:
        return f"host={self.host} port={self.port} dbname={self.database} user={self.user} password={self.password}"


def _pg_answers(dsn: str) -> bool:
    try:
        psycopg2.connect(dsn, connect_timeout=5).close()
        return True
    except psycopg2.OperationalError:
        return False


@pytest.fixture(scope="session")
def postgres(settings: Settings):
    """The warehouse Postgres, with the platform's tables (raw, ops, app) applied."""
    from weekly_wrapped import db
    from wrapped_dev.stack import postgres as local

    server = Postgres(settings.pg_host, settings.pg_port, settings.pg_user, settings.pg_password,
                      settings.pg_database)
    started = False
    if not _pg_answers(server.dsn):
        if _given("WRAPPED_PG_HOST", "WRAPPED_PG_PORT"):
            raise RuntimeError(f"the warehouse given in the environment does not answer: "
                               f"{server.host}:{server.port}/{server.database}")
        local.start(settings)
        started = True
    db.apply_schema(server.dsn)
    yield server
    if started and not _keep_running():
        local.stop(settings)


@dataclass(frozen=True)
class Kafka:
    bootstrap: str


def _kafka_answers(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka(settings: Settings):
    """The Kafka broker(s): `kafka.bootstrap`."""
    from wrapped_dev.stack import kafka as local

    broker = Kafka(settings.kafka_bootstrap)
    started = False
    if _given("WRAPPED_KAFKA_BOOTSTRAP"):
        if not _kafka_answers(broker.bootstrap):
            raise RuntimeError(f"the Kafka given in the environment does not answer: {broker.bootstrap}")
    elif not local.is_running(settings):
        local.start(settings)
        started = True
    yield broker
    if started and not _keep_running():
        local.stop(settings)


@dataclass(frozen=True)
class Spark:
    """What the streaming consumer needs besides Kafka and Postgres: a master and its jars."""

    master: str
    jars_dir: Path


@pytest.fixture(scope="session")
def spark(settings: Settings) -> Spark:
    """The consumer's prerequisites: the Spark master (WRAPPED_SPARK_MASTER) and the connector jars,
    resolved if missing. Nothing keeps running, so nothing is stopped."""
    from weekly_wrapped.streaming.jars import ensure_spark_jars

    jars_dir = settings.consumer.jars_dir
    ensure_spark_jars(jars_dir)
    return Spark(settings.spark_master, jars_dir)


@pytest.fixture(scope="session")
def fakes(settings: Settings) -> Settings:
    """The stack's fake Spotify, fake Gemini, fake MusicBrainz and SMTP sink on their usual ports."""
    from wrapped_dev.stack import fakes as local

    started = False
    if not local.is_running(settings):
        local.start(settings)
        started = True
    yield settings
    if started and not _keep_running():
        local.stop(settings)


@pytest.fixture(scope="session")
def airflow(settings: Settings, postgres: Postgres) -> str:
    """Airflow (api-server, scheduler, dag-processor, triggerer) on the stack; yields its API URL.

    If it started Airflow, at the end it also stops the streaming consumer its DAG may have
    started (unless that consumer ran before the session).
    """
    from weekly_wrapped.streaming import supervisor
    from wrapped_dev.stack import airflow as local

    started = False
    consumer_was_running = supervisor.is_running(settings.consumer)
    if not local.is_running(settings):
        local.start(settings)
        started = True
    yield local.api_url(settings)
    if started and not _keep_running():
        local.stop(settings)  # first: its supervision task would restart the consumer stopped before it
        if not consumer_was_running:
            supervisor.stop(settings.consumer)


@pytest.fixture(scope="session")
def stack(settings: Settings, postgres, kafka, spark, fakes, airflow) -> Settings:
    """The whole local stack, for the end-to-end demo; each part as its own fixture stops it."""
    return settings


@pytest.fixture(scope="session")
def warehouse(postgres: Postgres):
    """A factory of autocommit psycopg2 connections (default: the warehouse); closes them at the end."""
    opened = []

    def connect(dsn: str | None = None):
        conn = psycopg2.connect(dsn or postgres.dsn)
        conn.autocommit = True
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


def _airflow_env(home: Path) -> dict[str, str]:
    from wrapped_dev.config import REPO_ROOT

    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
    }


@pytest.fixture(scope="session")
def _migrated_airflow_db(tmp_path_factory) -> Path:
    """An empty, migrated SQLite Airflow metadata database, made once (migrating takes seconds)."""
    import subprocess

    home = tmp_path_factory.mktemp("airflow-home")
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    migrate = subprocess.run([airflow, "db", "migrate"], env=_airflow_env(home), capture_output=True, text=True,
                             timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    return home / "airflow.db"


@pytest.fixture
def airflow_test_env(_migrated_airflow_db, tmp_path) -> dict[str, str]:
    """Environment for child Airflow processes: a throwaway home with our DAGs and a fresh copy of
    the migrated metadata, so one test's runs and asset events never reach another test."""
    import shutil

    home = tmp_path / "airflow-home"
    home.mkdir()
    shutil.copyfile(_migrated_airflow_db, home / "airflow.db")
    return _airflow_env(home)
