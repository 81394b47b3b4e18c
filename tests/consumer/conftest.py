"""Consumer fixtures: one local SparkSession for the pure parse tests; a private database and
private topics per reliability test (so they run beside the shared stack's other users)."""

from __future__ import annotations

import os
import sys

import pytest

from consumer_helpers import create_database, create_topics, delete_topics, drop_database, dsn_for


@pytest.fixture(scope="session")
def spark():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("weekly-wrapped-parse-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def consumer_db(warehouse, settings):
    """A database of the test's own on the stack's Postgres: (name, dsn)."""
    name = create_database(settings.warehouse_dsn)
    yield name, dsn_for(settings.warehouse_dsn, name)
    drop_database(settings.warehouse_dsn, name)


@pytest.fixture
def topics(kafka_bootstrap):
    """Four fresh topics on the shared broker: {"plays": name, "tracks": ..., ...}."""
    names = create_topics(kafka_bootstrap)
    yield names
    delete_topics(kafka_bootstrap, names)
