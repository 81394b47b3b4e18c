"""Weekly Wrapped's streaming consumer: the four Kafka topics -> Postgres raw.*, exactly once.

One Spark Structured Streaming query reads spotify.plays/tracks/albums/artists through
the spark-sql-kafka-0-10 connector; every micro-batch is validated (bad messages go to
ops.dead_letters with the reason) and written in ONE Postgres transaction together with
its progress row in ops.consumer_batches. The checkpoint holds the Kafka offsets; a
restart resumes from it, and replays never make a second row.

Modes:
  continuous  run until stopped (SIGTERM), a micro-batch every --trigger-seconds (default)
  catch-up    process everything Kafka holds now (Trigger.AvailableNow), then exit 0

Examples:
  .local/venv/bin/python spark/consume_streams.py                 # what the supervisor runs
  .local/venv/bin/python spark/consume_streams.py --mode catch-up # backfill, then exit
  .local/venv/bin/python spark/consume_streams.py --master spark://host:7077

Postgres and Kafka come from the WRAPPED_* environment (weekly_wrapped.config).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

import psycopg2

from weekly_wrapped.config import load_settings
from weekly_wrapped.streaming import consumer, parse
from weekly_wrapped.streaming.jars import ensure_spark_jars

SCHEMA_SQL = Path(consumer.__file__).resolve().parents[1] / "sql" / "schema.sql"
log = logging.getLogger("weekly_wrapped.consumer")


def parse_args(argv=None) -> argparse.Namespace:
    settings = load_settings()
    parser = argparse.ArgumentParser(
        prog="consume_streams.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--master", default=settings.spark_master,
                        help="Spark master URL (default: WRAPPED_SPARK_MASTER, else %(default)s)")
    parser.add_argument("--mode", choices=("continuous", "catch-up"), default="continuous",
                        help="continuous (default) or catch-up: process what Kafka holds, then exit")
    parser.add_argument("--trigger-seconds", type=float, default=2.0,
                        help="micro-batch interval in continuous mode (default %(default)s)")
    parser.add_argument("--checkpoint", default=str(settings.checkpoint_dir / "consumer"),
                        help="checkpoint folder: Kafka offsets and batch log (default %(default)s)")
    parser.add_argument("--starting-offsets", default="earliest",
                        help="where a NEW checkpoint starts: earliest (default), latest, or Spark's JSON form")
    parser.add_argument("--topics", default="",
                        help="replace the four topics, e.g. 'plays=my.plays,tracks=my.tracks' "
                             "(only the listed streams are consumed; tests use unique names)")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=200_000,
                        help="upper bound of messages per micro-batch (default %(default)s)")
    parser.add_argument("--bootstrap", default=settings.kafka_bootstrap,
                        help="Kafka bootstrap servers (default: WRAPPED_KAFKA_BOOTSTRAP, else %(default)s)")
    parser.add_argument("--driver-memory", default=os.environ.get("WRAPPED_SPARK_DRIVER_MEMORY", "2g"),
                        help="Spark driver memory (default %(default)s)")
    return parser.parse_args(argv)


def apply_schema(dsn: str) -> None:
    """The raw/ops tables must exist before the first batch (idempotent DDL)."""
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        with conn, conn.cursor() as cur:
            # Several processes may apply it at once (up, tests, this job): serialize them.
            cur.execute("select pg_advisory_xact_lock(hashtext('weekly_wrapped.schema'))")
            cur.execute(SCHEMA_SQL.read_text())
    finally:
        conn.close()


def build_session(master: str, jars: list[Path], driver_memory: str):
    # The Python workers and the driver must be the same interpreter (the venv's).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(master)
        .appName("weekly-wrapped-consumer")
        .config("spark.jars", ",".join(str(j) for j in jars))
        .config("spark.driver.memory", driver_memory)
        # The validation fuses into one big generated method; HotSpot never JIT-compiles
        # methods over 8000 bytes of bytecode unless told to, which halves parse throughput.
        .config("spark.driver.extraJavaOptions", "-XX:-DontCompileHugeMethods")
        .config("spark.executor.extraJavaOptions", "-XX:-DontCompileHugeMethods")
        # Two cores: a few partitions, not the default 200, for the tiny end-offsets aggregate.
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    return spark


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    settings = load_settings()
    override = dict(pair.split("=", 1) for pair in args.topics.split(",") if pair.strip())
    topics = consumer.topics_for(override)
    apply_schema(settings.warehouse_dsn)
    spark = build_session(args.master, ensure_spark_jars(settings), args.driver_memory)

    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", args.bootstrap)
        .option("subscribe", ",".join(topics))
        .option("startingOffsets", args.starting_offsets)
        # Lost messages (retention, a recreated topic) must stop the consumer, not be skipped.
        .option("failOnDataLoss", "true")
        .option("maxOffsetsPerTrigger", str(args.max_offsets_per_trigger))
        .load()
    )
    # Validation is part of the streaming plan; every micro-batch arrives parsed and split.
    checked = parse.for_sink(parse.check_batch(reader, topics), topics)
    writer = consumer.BatchWriter(settings.warehouse_dsn, topics, args.checkpoint)
    stream = (
        checked.writeStream.queryName(consumer.QUERY_NAME)
        .foreachBatch(writer)
        .option("checkpointLocation", args.checkpoint)
    )
    if args.mode == "catch-up":
        stream = stream.trigger(availableNow=True)
    else:
        stream = stream.trigger(processingTime=f"{args.trigger_seconds} seconds")
    query = stream.start()
    log.info("query %s started (%s mode, topics %s, checkpoint %s)", query.id, args.mode,
             ", ".join(topics), args.checkpoint)

    stopping = []

    def request_stop(signum, _frame):
        stopping.append(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    started = time.monotonic()
    try:
        # Wait in short slices so that SIGTERM is handled between them.
        while query.isActive and not stopping:
            query.awaitTermination(2)
        if stopping:
            log.info("stopping on signal %s", stopping[0])
            query.stop()
        error = query.exception()
        if error is not None:
            log.error("query failed: %s", error)
            return 1
        log.info("query finished after %.1f s", time.monotonic() - started)
        return 0
    finally:
        writer.close()
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
