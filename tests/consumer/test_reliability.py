"""The consumer on real Kafka, Spark and Postgres, through failures.

Each test asserts that the set of acknowledged plays equals the set of rows in
raw.plays, that no natural key is there twice, and that the dead letters are
exactly the malformed messages it injected. Every test has its own topics and its
own database; the broker and Postgres restarts use private instances, so the
shared stack is never disturbed. Catch-up mode (Trigger.AvailableNow) keeps them fast.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from dataclasses import replace

import pytest

from weekly_wrapped import contracts
from weekly_wrapped.streaming import supervisor
from wrapped_dev.stack import kafka as stack_kafka
from wrapped_dev.stack import postgres as stack_postgres

from tests.support import unique
from tests.support.kafka import create_stream_topics, delete_topics
from tests.support.messages import album, artist, play, track
from tests.support.ports import free_port

from consumer_helpers import (
    AckingProducer,
    assert_exactly_once,
    catch_up,
    consumer_env,
    query,
    start_consumer,
    wait_for,
)

# The consumer job runs in these tests: it needs the Spark connector jars.
pytestmark = pytest.mark.usefixtures("spark")


# One of each kind the consumer must dead-letter, and where it is produced.
MALFORMED = [
    ("plays", b"{not json"),
    ("plays", b"\xff\xfe not utf-8"),
    ("plays", json.dumps(play("x", 1, played_at="yesterday")).encode()),  # wrong type
    ("plays", json.dumps({k: v for k, v in play("x", 2).items() if k != "track_id"}).encode()),  # missing field
    ("plays", json.dumps(play("x", 3, schema_version=99)).encode()),  # unknown schema_version
    ("plays", json.dumps(play("x", 4, context_uri="y" * (contracts.MAX_MESSAGE_BYTES + 10))).encode()),  # oversized
    ("tracks", json.dumps(dict(track("bad", 1), popularity="high")).encode()),
    ("albums", json.dumps({k: v for k, v in album("bad", 1).items() if k != "name"}).encode()),
    ("artists", b"[]"),
]
EXPECTED_REASONS = ["not JSON", "not UTF-8", "wrong type for 'played_at'", "missing required field 'track_id'",
                    "unknown schema_version 99", "oversized", "wrong type for 'popularity'",
                    "missing required field 'name'", "not JSON"]


def produce_plays(producer: AckingProducer, user: str, start: int, count: int) -> list[dict]:
    plays = [play(user, i) for i in range(start, start + count)]
    for p in plays:
        producer.send("plays", p, key=user)
    return plays


def counts(dsn: str) -> tuple:
    return query(dsn, "select (select count(*) from raw.plays), (select count(*) from raw.tracks), "
                      "(select count(*) from ops.dead_letters)")[0]


def rows_in(dsn: str) -> int:
    try:
        return query(dsn, "select count(*) from raw.plays")[0][0]
    except Exception:  # Postgres restarting, or the schema not applied yet
        return -1


def test_duplicates_and_every_malformed_kind_then_a_replay_from_earliest(
        topics, consumer_db, kafka, tmp_path):
    db, dsn = consumer_db
    producer = AckingProducer(kafka.bootstrap, topics)
    user = unique("user")
    plays = produce_plays(producer, user, 0, 300)
    for p in plays[:120]:  # the same messages produced twice
        producer.send("plays", p, key=user)
    for table, value in MALFORMED:
        producer.send(table, value)
    producer.send("tracks", track("t1", 30, "newest"), key="t1")
    producer.send("tracks", track("t1", 10, "older"), key="t1")  # arrives later, is older: ignored
    producer.send("albums", album("a1", 5), key="a1")
    producer.send("artists", artist("r1", 5), key="r1")
    producer.flush()
    env = consumer_env(db, kafka.bootstrap)
    checkpoint = tmp_path / "checkpoint"

    catch_up(env, topics, checkpoint, tmp_path / "consumer.log", "--max-offsets-per-trigger", "100")

    assert_exactly_once(dsn, producer.acked_plays, len(MALFORMED))
    reasons = [r for (r,) in query(dsn, "select error from ops.dead_letters order by topic, \"partition\", \"offset\"")]
    for expected in EXPECTED_REASONS:
        assert any(expected in r for r in reasons), (expected, reasons)
    assert query(dsn, "select name from raw.tracks where track_id = 't1'") == [("newest",)]
    batches = query(dsn, "select count(*), sum(input_rows), sum(plays_rows) from ops.consumer_batches")
    assert batches[0][0] >= 4 and batches[0][1] == producer.acked and batches[0][2] == 300

    # The checkpoint is lost: a new query replays everything from `earliest` and adds nothing.
    before = counts(dsn)
    shutil.rmtree(checkpoint)
    catch_up(env, topics, checkpoint, tmp_path / "consumer.log", "--starting-offsets", "earliest")
    assert counts(dsn) == before
    assert query(dsn, "select count(distinct query_id) from ops.consumer_batches") == [(2,)]
    assert_exactly_once(dsn, producer.acked_plays, len(MALFORMED))


def test_kill_9_before_commit_and_mid_batch_then_restart(topics, consumer_db, kafka, tmp_path):
    db, dsn = consumer_db
    producer = AckingProducer(kafka.bootstrap, topics)
    user = unique("user")
    produce_plays(producer, user, 0, 3000)
    producer.send("plays", b"garbage")
    producer.flush()
    env = consumer_env(db, kafka.bootstrap)
    checkpoint, log = tmp_path / "checkpoint", tmp_path / "consumer.log"

    # 1. Killed after batch 1's COPY and upserts, just before its COMMIT.
    crashing = dict(env, WRAPPED_CONSUMER_FAILPOINT="before_commit:1")
    run = start_consumer(crashing, topics, checkpoint, log, "catch-up", "--max-offsets-per-trigger", "500")
    assert run.wait(180) == -signal.SIGKILL, run.tail()
    assert query(dsn, "select batch_id from ops.consumer_batches") == [(0,)]
    assert rows_in(dsn) < 3000

    # 2. Continuous mode, killed -9 (driver and JVM) while it works through the backlog.
    run = start_consumer(env, topics, checkpoint, log, "continuous", "--max-offsets-per-trigger", "200",
                         "--trigger-seconds", "0.2")
    wait_for(lambda: query(dsn, "select count(*) from ops.consumer_batches")[0][0] >= 3, 120,
             "a batch after the restart", interval=0.2)
    run.kill()
    assert rows_in(dsn) < 3000, "killed too late to be mid-way"

    # 3. Restart: catch up from the checkpoint.
    catch_up(env, topics, checkpoint, log)
    assert_exactly_once(dsn, producer.acked_plays, 1)
    ids = [b for (b,) in query(dsn, "select batch_id from ops.consumer_batches order by batch_id")]
    assert ids == list(range(len(ids))), "every batch committed exactly once"


@pytest.fixture(scope="module")
def private_kafka(settings, tmp_path_factory):
    """A broker of our own (same jars, other ports), so we can stop it without disturbing anyone."""
    state = tmp_path_factory.mktemp("kafka-state")
    (state / "jars").mkdir()
    # The shared broker may be someone else's (reused, not started here): resolve the jars ourselves.
    (state / "jars" / "kafka").symlink_to(stack_kafka.ensure_jars(settings))
    port = free_port()
    private = replace(settings, state_dir=state, kafka_port=port, kafka_controller_port=free_port(),
                      kafka_bootstrap=f"127.0.0.1:{port}")
    stack_kafka.start(private)
    yield private
    stack_kafka.stop(private)


def test_broker_stopped_and_started_while_producing(private_kafka, consumer_db, tmp_path):
    db, dsn = consumer_db
    bootstrap = private_kafka.kafka_bootstrap
    topics = create_stream_topics(bootstrap, "test.consumer.")
    producer = AckingProducer(bootstrap, topics)
    user = unique("user")
    env = consumer_env(db, bootstrap)
    run = start_consumer(env, topics, tmp_path / "checkpoint", tmp_path / "consumer.log", "continuous",
                         "--trigger-seconds", "1")
    done = threading.Event()

    def keep_producing():
        i = 0
        while not done.is_set():
            produce_plays(producer, user, i, 20)
            i += 20
            time.sleep(0.05)

    thread = threading.Thread(target=keep_producing)
    thread.start()
    try:
        wait_for(lambda: rows_in(dsn) > 0, 120, "the first plays in Postgres")
        stack_kafka.stop(private_kafka)
        time.sleep(3)
        stack_kafka.start(private_kafka)
        time.sleep(3)
    finally:
        done.set()
        thread.join()
    producer.flush(180)
    assert producer.failed == 0
    if run.proc.poll() is not None:  # it gave up while the broker was away: the supervisor's job
        run = start_consumer(env, topics, tmp_path / "checkpoint", tmp_path / "consumer.log", "catch-up")
    wait_for(lambda: rows_in(dsn) >= len(producer.acked_plays), 120, "the consumer to catch up")
    run.kill()
    assert_exactly_once(dsn, producer.acked_plays, 0)
    delete_topics(bootstrap, topics.values())


@pytest.fixture(scope="module")
def private_postgres(settings, tmp_path_factory):
    """A PostgreSQL cluster of our own (same binaries, other port), so we can restart it."""
    state = tmp_path_factory.mktemp("pg-state")
    private = replace(settings, state_dir=state, pg_port=free_port())
    stack_postgres.start(private)
    yield private
    stack_postgres.stop(private)


def test_postgres_restarted_while_the_consumer_writes(private_postgres, topics, kafka, tmp_path):
    pg = private_postgres
    dsn = pg.warehouse_dsn
    producer = AckingProducer(kafka.bootstrap, topics)
    user = unique("user")
    produce_plays(producer, user, 0, 30_000)
    producer.flush()
    env = consumer_env(pg.pg_database, kafka.bootstrap, pg_port=pg.pg_port)
    run = start_consumer(env, topics, tmp_path / "checkpoint", tmp_path / "consumer.log", "continuous",
                         "--max-offsets-per-trigger", "3000", "--trigger-seconds", "0.5")
    wait_for(lambda: rows_in(dsn) > 0, 120, "the first plays in Postgres", interval=0.2)
    stack_postgres.stop(pg)  # fast shutdown: open transactions are rolled back
    # Plays arriving while Postgres is down: the consumer surely tries to write during the outage
    # (the first 30,000 may all be in before the stop on a fast machine).
    produce_plays(producer, user, 30_000, 1000)
    producer.flush()
    time.sleep(3)
    stack_postgres.start(pg)
    wait_for(lambda: rows_in(dsn) >= 31_000, 180, "the consumer to recover and catch up")
    assert run.proc.poll() is None, f"the consumer died instead of recovering:\n{run.tail()}"
    run.kill()
    assert "Postgres unavailable" in run.tail(400)
    assert_exactly_once(dsn, producer.acked_plays, 0)


def test_supervisor_restarts_a_dead_consumer_and_catches_up(settings, topics, consumer_db, kafka, tmp_path):
    db, dsn = consumer_db
    state = tmp_path / "state"
    private = replace(settings, state_dir=state, pg_database=db)
    private.consumer.work_dir.mkdir(parents=True)
    private.consumer.jars_dir.symlink_to(settings.consumer.jars_dir)
    producer = AckingProducer(kafka.bootstrap, topics)
    user = unique("user")
    produce_plays(producer, user, 0, 2000)
    producer.flush()
    try:
        supervisor.start(private.consumer, topics=topics)
        wait_for(lambda: supervisor.status(private.consumer).lag == 0, 120, "the first catch-up")
        status = supervisor.status(private.consumer)
        assert status.running and status.heartbeat_age_s is not None and status.query_id

        os.killpg(status.pid, signal.SIGKILL)
        wait_for(lambda: not supervisor.is_running(private.consumer), 30, "the consumer to die")
        produce_plays(producer, user, 2000, 2000)
        producer.flush()
        assert supervisor.status(private.consumer).lag == 2000

        after = supervisor.ensure_running(private.consumer, settle_seconds=5)
        assert after.running and after.pid != status.pid
        wait_for(lambda: supervisor.status(private.consumer).lag == 0, 120, "the restarted consumer to catch up")
        assert supervisor.status(private.consumer).query_id == status.query_id, "resumed from the same checkpoint"
        assert_exactly_once(dsn, producer.acked_plays, 0)
        assert supervisor.plays_committed_since(dsn, None)[0] == 4000
    finally:
        supervisor.stop(private.consumer)
    assert not supervisor.is_running(private.consumer)


def test_a_standby_takes_over_a_consumer_killed_mid_stream(settings, topics, consumer_db, kafka, tmp_path):
    """The real job as standby: its Spark is up and it waits on the lock; kill -9 of the consumer
    while plays keep coming -> the standby holds the lock at once, resumes from the checkpoint, and
    every acknowledged play lands once."""
    db, dsn = consumer_db
    private = replace(settings, state_dir=tmp_path / "state", pg_database=db, consumer_standby=True)
    config = private.consumer
    config.work_dir.mkdir(parents=True)
    config.jars_dir.symlink_to(settings.consumer.jars_dir)
    producer = AckingProducer(kafka.bootstrap, topics)
    user = unique("user")
    produce_plays(producer, user, 0, 2000)
    producer.flush()
    try:
        consumer = supervisor.start(config, topics=topics)
        wait_for(lambda: supervisor.status(config).lag == 0, 120, "the first catch-up")
        query_id = supervisor.status(config).query_id
        standby = supervisor.start_standby(config)
        wait_for(lambda: supervisor.status(config).standby_waiting, 120, "the standby's Spark to start")
        # It waits warm: the parse path ran once (compiled), so its first batch is not a cold one.
        assert "standby: warmed up on" in supervisor.log_tail(config, 200)

        producing = threading.Thread(target=lambda: (produce_plays(producer, user, 2000, 3000), producer.flush()))
        producing.start()
        time.sleep(0.5)
        os.killpg(consumer, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: supervisor._lock_holder_pid(config) == standby, 10, "the standby to take the lock", 0.05)
        taken = time.monotonic() - killed
        producing.join()

        after = supervisor.ensure_running(config)
        assert after.running and after.pid == standby and after.standby_pid is None
        assert len(supervisor.recent_deaths(config, 600)) == 1
        wait_for(lambda: supervisor.status(config).lag == 0, 120, "the standby to catch up")
        assert taken < 2, f"the lock passed to the standby {taken:.1f}s after the kill"
        assert supervisor.status(config).query_id == query_id, "resumed from the same checkpoint"
        assert_exactly_once(dsn, producer.acked_plays, 0)
        assert supervisor.plays_committed_since(dsn, None)[0] == 5000
    finally:
        supervisor.stop(config)
    assert not supervisor.is_running(config) and supervisor.standby_pid(config) is None


def test_supervisor_fails_loudly_when_the_consumer_keeps_dying(settings, tmp_path):
    # Nothing listens on this Postgres port: the job dies at once, with the reason in its log.
    private = replace(settings, state_dir=tmp_path / "state", pg_port=free_port())
    for _ in range(supervisor.MAX_DEATHS):
        with pytest.raises(supervisor.ConsumerDied, match="exited right after starting"):
            supervisor.ensure_running(private.consumer, settle_seconds=30)
    with pytest.raises(supervisor.ConsumerDied, match="died 3 times") as failure:
        supervisor.ensure_running(private.consumer)
    assert "Connection refused" in str(failure.value) or "connection" in str(failure.value).lower()
