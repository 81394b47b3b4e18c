"""The `spark_consumers` DAG itself, run with `dag.test()` in a child process (its own Airflow
home, SQLite metadata): it restarts a dead consumer, which catches up, and it updates the
RAW_PLAYS asset only when new plays were committed since its last update. Then the watching
loop of its continuous runs (`supervisor.supervise`) restarts a consumer killed under it within
seconds, and the announcer's wait (`supervisor.wait_for_new_plays`) returns on new plays.

The consumer is a private one (own state folder, database and topics), selected through
WRAPPED_* variables, so the shared stack's consumer is never touched."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import replace

import pytest
from dag_runs import run_dag_test

from weekly_wrapped.streaming import supervisor

from wrapped_dev.stack.env import connections, variables

from tests.support import unique
from tests.support.messages import play

from consumer_helpers import AckingProducer, assert_exactly_once, wait_for

# The consumer job runs in these tests: it needs the Spark connector jars.
pytestmark = pytest.mark.usefixtures("spark")


def test_dag_restarts_a_dead_consumer_and_announces_new_plays_once(
        airflow_test_env, settings, topics, consumer_db, kafka, tmp_path):
    db, dsn = consumer_db
    state = tmp_path / "state"
    # Without a standby: these runs restart the consumer themselves (test_reliability covers the standby).
    private = replace(settings, state_dir=state, pg_database=db, consumer_standby=False)
    private.consumer.work_dir.mkdir(parents=True)
    private.consumer.jars_dir.symlink_to(settings.consumer.jars_dir)
    env = {**airflow_test_env, **connections(private), **variables(private)}
    producer = AckingProducer(kafka.bootstrap, topics)
    user = unique("user")
    for i in range(500):
        producer.send("plays", play(user, i), key=user)
    producer.flush()
    try:
        supervisor.start(private.consumer, topics=topics)  # remembers the test's topics in its state folder
        wait_for(lambda: supervisor.status(private.consumer).lag == 0, 300, "the first catch-up")
        dead = supervisor.status(private.consumer).pid
        os.killpg(dead, signal.SIGKILL)
        wait_for(lambda: not supervisor.is_running(private.consumer), 30, "the consumer to die")
        for i in range(500, 1000):
            producer.send("plays", play(user, i), key=user)
        producer.flush()

        first = run_dag_test(env, "spark_consumers")
        assert "consumer not running (1 unexpected exits lately); starting it" in first
        assert "new plays committed since the beginning" in first
        restarted = supervisor.status(private.consumer)
        assert restarted.running and restarted.pid != dead
        wait_for(lambda: supervisor.status(private.consumer).lag == 0, 300, "the restarted consumer to catch up")
        assert_exactly_once(dsn, producer.acked_plays, 0)

        # Healthy and idle: nothing restarted, and no asset update without new plays (through the
        # watching loop the continuous runs use, for one check).
        second = run_dag_test(env, "spark_consumers", {"watch_seconds": 0})
        assert "starting it" not in second and "lag 0 messages" in second
        if "new plays committed since 20" in second:  # the restart's catch-up landed after run 1
            third = run_dag_test(env, "spark_consumers")
            assert "no new plays committed since" in third
        else:
            assert "no new plays committed since" in second
        assert supervisor.status(private.consumer).pid == restarted.pid

        # The loop a continuous run keeps going: a consumer killed under it is back within seconds;
        # the announcer's wait returns as soon as new plays are committed, and not without any.
        _, since = supervisor.plays_committed_since(dsn, None)
        outcome = {}
        watcher = threading.Thread(target=lambda: outcome.update(
            state=supervisor.supervise(private.consumer, run_seconds=20)))
        watcher.start()
        time.sleep(1)
        os.killpg(restarted.pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: supervisor.status(private.consumer).pid not in (None, restarted.pid), 20,
                 "the watching loop to restart the killed consumer")
        assert time.monotonic() - killed < 15, "restarted within a few checks"
        for i in range(1000, 1500):
            producer.send("plays", play(user, i), key=user)
        producer.flush()
        plays, through = supervisor.wait_for_new_plays(dsn, since, run_seconds=300)
        assert plays > 0
        watcher.join(300)
        assert outcome["state"].running
        wait_for(lambda: supervisor.status(private.consumer).lag == 0, 300, "the catch-up after the kill")
        assert_exactly_once(dsn, producer.acked_plays, 0)
        _, newest = supervisor.plays_committed_since(dsn, None)
        assert supervisor.wait_for_new_plays(dsn, newest, run_seconds=0)[0] == 0
    finally:
        supervisor.stop(private.consumer)
