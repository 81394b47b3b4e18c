"""Session fixtures for the real services.

`stack` makes sure the local stack runs: it reuses services that are already up
(a developer's `wrapped up`) and starts the missing ones otherwise; what it
started, it stops at the end. A service that cannot start is an error, never a skip.
"""

from __future__ import annotations

import os

import psycopg2
import pytest

from weekly_wrapped.config import Settings, load_settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


def _stack_is_up(settings: Settings) -> bool:
    from weekly_wrapped.stack import airflow, fakes, kafka, postgres

    return (postgres.is_running(settings) and kafka.is_running(settings)
            and fakes.is_running(settings) and airflow.is_running(settings))


@pytest.fixture(scope="session")
def stack(settings: Settings):
    """The whole local stack: Postgres, Kafka, the fakes, Airflow."""
    from weekly_wrapped.cli import down, up

    started_here = not _stack_is_up(settings)
    if started_here:
        up(settings)
    else:
        from weekly_wrapped.stack import postgres

        postgres.apply_schema(settings.warehouse_dsn)
    yield settings
    if started_here and os.environ.get("WRAPPED_KEEP_STACK") != "1":
        down(settings)


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
