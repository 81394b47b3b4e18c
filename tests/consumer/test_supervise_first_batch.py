"""A consumer busy with its first batch after a start (the whole backlog, Spark starting) is not
"stalled" before FIRST_BATCH_SECONDS; one that has committed since its start is held to
STALL_SECONDS. Pure: no consumer runs (the stalled case would ask Kafka and Postgres again)."""

import os
import time
from pathlib import Path

from weekly_wrapped.streaming import supervisor


def _started_ago(config: supervisor.ConsumerConfig, seconds: float) -> None:
    pid_file = supervisor.service(config).pid_file
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text("1")
    os.utime(pid_file, (time.time() - seconds, time.time() - seconds))


def _status(heartbeat_age_s: float | None) -> supervisor.Status:
    return supervisor.Status(running=True, pid=1, query_id="q", last_batch_id=None if heartbeat_age_s is None else 3,
                             heartbeat_age_s=heartbeat_age_s, lag=50_000)


def test_the_first_batch_after_a_start_gets_longer_than_the_stall_limit(tmp_path: Path):
    config = supervisor.ConsumerConfig(dsn="", kafka_bootstrap="127.0.0.1:1", work_dir=tmp_path)
    _started_ago(config, supervisor.STALL_SECONDS + 60)
    assert not supervisor._stalled(config, _status(None), supervisor.STALL_SECONDS)  # never committed
    assert not supervisor._stalled(config, _status(3600), supervisor.STALL_SECONDS)  # last batch before the start
    assert not supervisor._stalled(config, _status(5), supervisor.STALL_SECONDS)  # committed since: progressing
