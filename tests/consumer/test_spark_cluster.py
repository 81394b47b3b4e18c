"""The consumer on a Spark standalone cluster, whose only worker dies with `kill -9` mid-batch.

The cluster is the stack's own code (`wrapped_dev.stack.spark`) on free ports in a temp
folder; the consumer is the real job, started by the real supervisor with
`--master spark://...`, on topics and a database of the test's own. The worker is killed
(with its executor: the whole process group, as when its machine dies) while a task of a
micro-batch runs, more plays arrive while no worker is there, a worker starts again as
`wrapped up` starts it, and every acknowledged play is in raw.plays exactly once, with no
restart of the consumer.
"""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from weekly_wrapped.streaming import process, supervisor
from weekly_wrapped.streaming.supervisor import ConsumerConfig
from wrapped_dev.config import load_settings
from wrapped_dev.stack import spark as stack_spark

from tests.support.messages import play
from tests.support.ports import free_port

from consumer_helpers import AckingProducer, assert_exactly_once, query, wait_for

# A first batch (committed before the kill), the batch the kill interrupts, plays while no worker runs.
FIRST, SECOND, WITHOUT_WORKER = 3_000, 9_000, 1_000
TASK = re.compile(r"Running task (\d+)\.(\d+) in stage (\d+)\.\d+ \(TID (\d+)\)")


def cluster_settings(state_dir):
    settings = replace(load_settings(), state_dir=state_dir, spark_master_port=free_port(),
                       spark_master_ui_port=free_port(), spark_worker_ui_port=free_port(),
                       spark_worker_cores=2, spark_worker_memory="1g")
    return replace(settings, spark_master=stack_spark.master_url(settings))


def tasks(settings) -> tuple[dict[str, tuple[int, int, int]], set[str]]:
    """Every task attempt the executors started ({TID: (stage, task, attempt)}) and the TIDs they
    finished, from the executors' own logs in the worker's folder."""
    started, finished = {}, set()
    for stderr in stack_spark.worker_dir(settings).glob("app-*/*/stderr"):
        text = stderr.read_text(errors="replace")
        for task, attempt, stage, tid in TASK.findall(text):
            started[tid] = (int(stage), int(task), int(attempt))
        finished |= set(re.findall(r"Finished task .*\(TID (\d+)\)", text))
    return started, finished


def running_tasks(settings) -> set[tuple[int, int, int]]:
    started, finished = tasks(settings)
    return {attempt for tid, attempt in started.items() if tid not in finished}


def plays_in(dsn: str) -> int:
    try:
        return query(dsn, "select count(*) from raw.plays")[0][0]
    except Exception:  # the consumer has not created the tables yet
        return 0


def produce(producer: AckingProducer, first: int, count: int) -> None:
    for i in range(first, first + count):
        producer.send("plays", play(f"listener-{i % 50}", i), key=f"listener-{i % 50}")
    producer.flush()


def test_worker_killed_mid_batch_loses_and_duplicates_nothing(postgres, kafka, spark, consumer_db, topics,
                                                              tmp_path):
    cluster = cluster_settings(tmp_path / "stack")
    _, dsn = consumer_db
    config = ConsumerConfig(dsn, kafka.bootstrap, tmp_path / "consumer", cluster.spark_master, "1g")
    config.work_dir.mkdir(parents=True)
    config.jars_dir.symlink_to(spark.jars_dir)
    producer = AckingProducer(kafka.bootstrap, topics)
    # The cluster starts while the driver does (each takes seconds); the driver waits for its executor.
    pool = ThreadPoolExecutor(1)
    try:
        starting = pool.submit(stack_spark.start, cluster)
        pid = supervisor.start(config, topics=topics)
        produce(producer, 0, FIRST)
        starting.result()
        wait_for(lambda: plays_in(dsn) == FIRST, 600, "the first batch")

        produce(producer, FIRST, SECOND)
        killed = wait_for(lambda: running_tasks(cluster), 60, "a task of the next batch", interval=0.05)
        os.killpg(process.read_pid(stack_spark.worker_service(cluster)), signal.SIGKILL)
        produce(producer, FIRST + SECOND, WITHOUT_WORKER)
        time.sleep(2)  # the driver notices the lost executor before a worker is back
        stack_spark.start_worker(cluster)

        total = FIRST + SECOND + WITHOUT_WORKER
        wait_for(lambda: plays_in(dsn) >= total, 600, f"{total} plays in raw.plays")
        assert len(producer.acked_plays) == total
        assert_exactly_once(dsn, producer.acked_plays, dead_letters=0)

        # The kill interrupted those tasks: the driver lost them and ran each again on the new worker.
        log = supervisor.service(config).log_file.read_text(errors="replace")
        assert "Lost executor" in log
        started, _ = tasks(cluster)
        for stage, task, attempt in killed:
            assert any(s == stage and t == task and a > attempt for s, t, a in started.values()), \
                f"task {task} of stage {stage} never ran again"
        assert supervisor.our_consumer_pid(config) == pid, "the consumer had to be restarted"
        apps = stack_spark.master_state(cluster)["activeapps"]
        assert [app["name"] for app in apps] == ["weekly-wrapped-consumer"], "the consumer is not on the cluster"
    finally:
        supervisor.stop(config)
        pool.shutdown()
        stack_spark.stop(cluster)
