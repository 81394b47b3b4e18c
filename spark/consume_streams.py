"""Weekly Wrapped's streaming consumer: the four Kafka topics -> Postgres raw.*, exactly once.

One Spark Structured Streaming query reads spotify.plays/tracks/albums/artists through
the spark-sql-kafka-0-10 connector; every micro-batch is validated (bad messages go to
ops.dead_letters with the reason) and written in ONE Postgres transaction together with
its progress row in ops.consumer_batches. The checkpoint holds the Kafka offsets; a
restart resumes from it, and replays never make a second row.

Modes:
  continuous  run until stopped (SIGTERM), a micro-batch every --trigger-seconds (default)
  catch-up    process everything Kafka holds now (Trigger.AvailableNow), then exit 0

The supervisor (`weekly_wrapped.streaming.supervisor`) starts it with every flag set from
Airflow's Connections; the warehouse DSN comes from the WRAPPED_WAREHOUSE_DSN environment
variable (kept off the command line, where `ps` would show its password). The supervisor
hands it the exclusive lock of its work dir (`--lock-fd`), which it holds until it exits; by
hand, `--lock-file <work dir>/spark-consumer.lock` takes that lock (and refuses to run beside
another consumer). A standby (`--lock-file ... --standby`) starts Spark and builds its plan
first, then waits for that lock and takes over the moment the running consumer dies: recovery
without a JVM start. By hand:

  WRAPPED_WAREHOUSE_DSN='host=... dbname=... user=... password=...' \
    .local/venv/bin/python spark/consume_streams.py --bootstrap broker:9092 \
      --checkpoint /data/spark/checkpoints/consumer --jars-dir /data/spark/jars [--mode catch-up] \
      [--master spark://host:7077]
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import sys
import time
from pathlib import Path

from weekly_wrapped import db
from weekly_wrapped.streaming import consumer, parse
from weekly_wrapped.streaming.jars import ensure_spark_jars
from weekly_wrapped.streaming.supervisor import DSN_ENV

log = logging.getLogger("weekly_wrapped.consumer")

# Messages per Spark task (and per piece written to Postgres) in a big micro-batch.
RECORDS_PER_TASK = 25_000
JVM_OPTIONS = " ".join((
    # The validation fuses into one big generated method; HotSpot never JIT-compiles
    # methods over 8000 bytes of bytecode unless told to, which halves parse throughput.
    "-XX:-DontCompileHugeMethods",
    # The optimizing compiler only for methods run 10x more often than HotSpot's default: the
    # per-row code gets there within a batch, while the planner and Kafka client code run per
    # batch or task kept the compiler threads busy for hundreds of batches (2.7 of 7 CPU seconds
    # per 500k plays after 25 batches; 0.5 with these thresholds, the per-row work unchanged).
    "-XX:Tier4InvocationThreshold=50000 -XX:Tier4MinInvocationThreshold=20000 -XX:Tier4CompileThreshold=60000",
    # The throughput collector, not G1: the consumer's heap is short-lived rows and Arrow buffers,
    # and G1's write barriers and concurrent threads cost more than they save here. A million plays,
    # three interleaved pairs: committed after 9.7-11.1 s against G1's 12.0-14.4, the JVM 7.5-7.7 CPU
    # seconds against 8.5-10.2. Its pauses stop the world; bench/latency.py counts them (p95 0.83 s).
    "-XX:+UseParallelGC",
))
CHECKPOINT_FILE_MANAGER = "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
# Bytes a task's Kafka consumer asks for per partition and fetch: a task's share of a big batch at once.
FETCH_BYTES = 16 * 1024 * 1024
FETCH_MAX_WAIT_MS = 20
MAX_POLL_RECORDS = 5_000
# A task's result (its Arrow batch, a few MB for 25,000 plays) goes to the driver in the task's status
# message up to this size. Above it (Spark's default is 1 MB) the executor parks the result in its
# block manager and the driver fetches it over the network, in local mode from itself: netty
# threads and copies, ~5% of the consumer JVM's CPU. Spark caps it at spark.rpc.message.maxSize (128 MB).
MAX_DIRECT_RESULT_SIZE = "64m"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="consume_streams.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--master", default="local[2]",
                        help="Spark master URL, e.g. spark://host:7077 (default %(default)s)")
    parser.add_argument("--mode", choices=("continuous", "catch-up"), default="continuous",
                        help="continuous (default) or catch-up: process what Kafka holds, then exit")
    parser.add_argument("--trigger-seconds", type=float, default=0.5,
                        help="micro-batch interval in continuous mode (default %(default)s)")
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint folder: Kafka offsets and batch log")
    parser.add_argument("--jars-dir", required=True, type=Path,
                        help="where the Kafka connector and JDBC jars are resolved (once, with Maven) and the parse fast path built")
    parser.add_argument("--starting-offsets", default="earliest",
                        help="where a NEW checkpoint starts: earliest (default), latest, or Spark's JSON form")
    parser.add_argument("--topics", default="",
                        help="replace the four topics, e.g. 'plays=my.plays,tracks=my.tracks' "
                             "(only the listed streams are consumed; tests use unique names)")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=500_000,
                        help="upper bound of messages per micro-batch (default %(default)s)")
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers (host:port,...)")
    parser.add_argument("--driver-memory", default="2g",
                        help="Spark driver memory (default %(default)s)")
    lock = parser.add_mutually_exclusive_group()
    lock.add_argument("--lock-fd", type=int,
                      help="a descriptor of the work dir's lock file, locked by the supervisor that started us")
    lock.add_argument("--lock-file", type=Path,
                      help="take this lock file ourselves (by hand): exit 3 if another consumer holds it")
    parser.add_argument("--standby", action="store_true",
                        help="with --lock-file: start Spark, then wait for the lock instead of exiting 3, "
                             "and consume once it is ours (a warm stand-in for the running consumer)")
    args = parser.parse_args(argv)
    if args.standby and args.lock_file is None:
        parser.error("--standby needs --lock-file")
    return args


def hold_consumer_lock(args: argparse.Namespace, wait: bool = False) -> bool:
    """Hold the lock that tells supervisors this consumer is alive: its descriptor stays open until
    we exit (the kernel then drops the lock). False: another consumer holds it (`wait`: block until
    it is gone instead)."""
    if args.lock_fd is not None:
        fd = args.lock_fd
        os.set_inheritable(fd, False)  # Spark's JVM must not keep the lock after we are gone
    elif args.lock_file is not None:
        fd = os.open(args.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    else:
        return True  # no lock asked for (tests running the job directly)
    try:
        # Already ours when handed over (a no-op then); this also proves it is.
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return False
    if args.lock_file is not None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return True



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
        .config("spark.driver.extraJavaOptions", JVM_OPTIONS)
        .config("spark.executor.extraJavaOptions", JVM_OPTIONS)
        # Two cores: a few partitions, not the default 200, for the tiny end-offsets aggregate.
        .config("spark.sql.shuffle.partitions", "2")
        # One Arrow batch per task: the driver hands each task's result to Postgres as one piece.
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "0")
        # The default (FileContext) checkpoint manager has Hadoop start `readlink` and `chmod`
        # processes for every file it writes (no native library here): ~20 per micro-batch, ~60 ms.
        # The FileSystem one renames a temp file into place, atomic on a local disk and on HDFS.
        .config("spark.sql.streaming.checkpointFileManagerClass", CHECKPOINT_FILE_MANAGER)
        .config("spark.task.maxDirectResultSize", MAX_DIRECT_RESULT_SIZE)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _exit_on_signal(signum, _frame):
    raise SystemExit(f"stopped on signal {signum}")


def log_progress(query, logged: int) -> int:
    """Log Spark's own timings of the batches after `logged` (where a batch's time went); the last one logged."""
    for progress in query.recentProgress:
        batch = progress.get("batchId", -1)
        if batch > logged and progress.get("numInputRows"):
            times = ", ".join(f"{k} {v}" for k, v in sorted(progress.get("durationMs", {}).items()))
            log.info("batch %d timings (ms): %s", batch, times)
            logged = batch
    return logged


def streaming_plan(spark, args: argparse.Namespace, dsn: str, topics):
    """The query, ready to start: Kafka's four topics, parsed and split, written by `BatchWriter`."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", args.bootstrap)
        .option("subscribe", ",".join(topics))
        .option("startingOffsets", args.starting_offsets)
        # Lost messages (retention, a recreated topic) must stop the consumer, not be skipped.
        .option("failOnDataLoss", "true")
        .option("maxOffsetsPerTrigger", str(args.max_offsets_per_trigger))
        # Big batches in several tasks: the first ones reach Postgres while Spark parses the rest
        # (BatchWriter writes each task's rows as it arrives); small batches stay one task each.
        .option("maxRecordsPerPartition", str(RECORDS_PER_TASK))
        # Kafka's 1 MB per partition and fetch made reading half of a batch's Spark time (each
        # task fetched its ~7 MB in pieces, a round trip each): 500k plays read in 1.6 s, 0.6 s so.
        .option("kafka.max.partition.fetch.bytes", str(FETCH_BYTES))
        # A task's Kafka consumer leaves a fetch in flight when it is done; at the log's end the
        # broker parks it for fetch.max.wait.ms (500 by default), and the next batch's task waits
        # for it to come back: a micro-batch of 1,000 plays took 1.2 s, 0.2 s with 20 ms. A task
        # only asks for offsets that exist, so a short wait costs nothing.
        .option("kafka.fetch.max.wait.ms", str(FETCH_MAX_WAIT_MS))
        # After every poll Spark asks the broker for the partition's earliest and latest offsets (two
        # round trips): with Kafka's 500 records a poll, a 25,000-record task made 150 requests.
        # 5,000: Kafka 1.0-1.4 -> 0.4-0.6 CPU s per million plays (polls of 25,000 cost the JVM more).
        .option("kafka.max.poll.records", str(MAX_POLL_RECORDS))
        .load()
    )
    # Validation is part of the streaming plan; every micro-batch arrives parsed and split.
    checked = parse.for_sink(parse.check_batch(reader, topics), topics)
    writer = consumer.BatchWriter(dsn, topics, args.checkpoint)
    stream = (
        checked.writeStream.queryName(consumer.QUERY_NAME)
        .foreachBatch(writer)
        .option("checkpointLocation", args.checkpoint)
    )
    if args.mode == "catch-up":
        stream = stream.trigger(availableNow=True)
    else:
        stream = stream.trigger(processingTime=f"{args.trigger_seconds} seconds")
    return stream, writer


# How much of Kafka's recent past a standby reads to warm up (milliseconds).
WARM_UP_MS = 2000


def warm_up(spark, args: argparse.Namespace, topics) -> None:
    """Run the parse and Arrow path once, writing nothing, so that a takeover's first batch finds
    Spark's generated code compiled and the JVM warm: on first use, that batch took 20 s on a busy
    machine, against 2 s for a warm consumer's. Reads the topics' last WARM_UP_MS (possibly nothing:
    the code is compiled all the same)."""
    started = time.monotonic()
    try:
        recent = (
            spark.read.format("kafka")
            .option("kafka.bootstrap.servers", args.bootstrap)
            .option("subscribe", ",".join(topics))
            .option("startingTimestamp", str(int(time.time() * 1000) - WARM_UP_MS))
            .option("startingOffsetsByTimestampStrategy", "latest")  # a quiet partition: nothing
            .load()
        )
        checked = parse.for_sink(parse.check_batch(recent, topics), topics)
        rows = 0
        for table in consumer.arrow_tables(checked):
            consumer.split_arrow(table, topics)  # the sink's first step, in Python
            rows += table.num_rows
    except Exception as exc:  # a standby that cannot warm up still takes over, only slower
        log.warning("standby: warm-up failed (%s); going on without it", exc)
        return
    log.info("standby: warmed up on %d recent messages in %.1f s", rows, time.monotonic() - started)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    if args.standby:
        # Until the lock is ours there is no query to stop: a SIGTERM ends the wait (and Spark).
        signal.signal(signal.SIGTERM, _exit_on_signal)
    elif not hold_consumer_lock(args):
        log.error("another consumer holds %s; not starting a second one", args.lock_file)
        return 3
    dsn = os.environ.get(DSN_ENV)
    if not dsn:
        log.error("%s is not set: the consumer does not know its warehouse", DSN_ENV)
        return 2
    override = dict(pair.split("=", 1) for pair in args.topics.split(",") if pair.strip())
    topics = consumer.topics_for(override)
    if args.standby:
        spark = build_session(args.master, ensure_spark_jars(args.jars_dir), args.driver_memory)
        # The plan too: building it costs seconds of Python and JVM work that a takeover would wait for.
        stream, writer = streaming_plan(spark, args, dsn, topics)
        # The warm-up only while the consumer runs: one that died while we started is not kept waiting.
        if not hold_consumer_lock(args):
            warm_up(spark, args, topics)
            log.info("standby: Spark is up, its plan built; waiting for %s", args.lock_file)
            hold_consumer_lock(args, wait=True)  # Spark's JVM exits with us if we are stopped while waiting
        log.info("standby: the lock is ours; taking over")
        db.apply_schema(dsn)
    else:
        db.apply_schema(dsn)  # a warehouse out of reach fails the start before Spark's
        spark = build_session(args.master, ensure_spark_jars(args.jars_dir), args.driver_memory)
        stream, writer = streaming_plan(spark, args, dsn, topics)
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
        logged = -1
        while query.isActive and not stopping:
            query.awaitTermination(2)
            logged = log_progress(query, logged)
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
