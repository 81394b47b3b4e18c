"""Consumer fixtures: one local SparkSession for the parse tests; a private database and
private topics per reliability test (so they run beside the shared stack's other users)."""

from __future__ import annotations

import os
import sys

import pytest

from tests.support.kafka import private_topics
from tests.support.postgres import private_database


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory):
    """A local SparkSession for the pure DataFrame functions (no Kafka; only our parse fast path's jar)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    from weekly_wrapped.streaming.jars import build_udf_jar

    session = (
        SparkSession.builder.master("local[2]")
        .appName("weekly-wrapped-parse-tests")
        .config("spark.jars", str(build_udf_jar(tmp_path_factory.mktemp("udf"))))
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture
def consumer_db(postgres):
    """A database of the test's own on the warehouse's server: (name, dsn)."""
    with private_database(postgres.dsn, "wrapped_test_consumer") as (name, dsn):
        yield name, dsn


@pytest.fixture
def topics(kafka):
    """Four fresh topics on the shared broker: {"plays": name, "tracks": ..., ...}."""
    with private_topics(kafka.bootstrap, "test.consumer.") as names:
        yield names
