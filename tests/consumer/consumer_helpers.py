"""Building blocks of the consumer tests: an acknowledging producer, the consumer as a
subprocess, and the exactly-once assertion.

Private topics and databases, and the messages, come from `tests.support`: everything a
test creates is its own (names carry a random suffix) and is removed afterwards, so these
tests run beside the shared stack's users.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg2
from confluent_kafka import Producer

from weekly_wrapped.streaming.supervisor import DSN_ENV
from wrapped_dev.config import REPO_ROOT, load_settings

JOB = REPO_ROOT / "spark" / "consume_streams.py"
# Test-only keys of consumer_env(): what start_consumer() turns into the job's flags.
BOOTSTRAP, JARS = "TEST_CONSUMER_BOOTSTRAP", "TEST_CONSUMER_JARS_DIR"


@dataclass
class AckingProducer:
    """Produces like the real producer (idempotent, acks=all) and remembers what Kafka acknowledged."""

    bootstrap: str
    topics: dict[str, str]
    acked_plays: set = field(default_factory=set)
    acked: int = 0
    failed: int = 0

    def __post_init__(self):
        self.producer = Producer({
            "bootstrap.servers": self.bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "message.max.bytes": 2_000_000, "compression.type": "zstd",  # as the real producer
            # While a broker restarts, keep retrying rather than failing the message.
            "message.timeout.ms": 120_000,
        })
        self.lock = threading.Lock()

    def _report(self, play_key):
        def delivery_report(err, msg):
            with self.lock:
                if err is not None:
                    self.failed += 1
                    return
                self.acked += 1
                if play_key is not None:
                    self.acked_plays.add(play_key)
        return delivery_report

    def send(self, table: str, value, key: str | None = None) -> None:
        """`value`: a dict (JSON-encoded; a valid play is tracked) or raw bytes (malformed)."""
        play_key = None
        if isinstance(value, dict):
            if table == "plays":
                play_key = (value.get("user_id"), value.get("played_at"), value.get("track_id"))
            value = json.dumps(value).encode()
        while True:
            try:
                self.producer.produce(self.topics[table], value=value, key=key,
                                      on_delivery=self._report(play_key))
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)

    def flush(self, timeout: float = 120) -> None:
        remaining = self.producer.flush(timeout)
        assert remaining == 0, f"{remaining} messages not delivered"


def consumer_env(database: str, bootstrap: str, pg_port: int | None = None, **extra) -> dict[str, str]:
    """The consumer's environment (the warehouse DSN) plus the bootstrap that `start_consumer` passes on."""
    settings = load_settings()
    warehouse = replace(settings, pg_database=database, pg_port=pg_port or settings.pg_port)
    env = dict(os.environ)
    env.update({DSN_ENV: warehouse.warehouse_dsn, BOOTSTRAP: bootstrap, JARS: str(settings.consumer.jars_dir),
                "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


@dataclass
class ConsumerRun:
    proc: subprocess.Popen
    log: Path

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"consumer did not finish in {timeout}s:\n{self.tail()}")

    def kill(self) -> None:
        """kill -9 the driver and its JVM (the whole process group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_consumer(env: dict, topics: dict[str, str], checkpoint: Path, log: Path, mode: str = "catch-up",
                   *args: str) -> ConsumerRun:
    argv = [sys.executable, str(JOB), "--mode", mode, "--checkpoint", str(checkpoint),
            "--bootstrap", env[BOOTSTRAP], "--jars-dir", env[JARS],
            "--topics", ",".join(f"{k}={v}" for k, v in topics.items()), *args]
    out = open(log, "ab")
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=REPO_ROOT)
    out.close()
    return ConsumerRun(proc, log)


def catch_up(env: dict, topics: dict[str, str], checkpoint: Path, log: Path, *args: str, timeout: float = 180):
    run = start_consumer(env, topics, checkpoint, log, "catch-up", *args)
    code = run.wait(timeout)
    assert code == 0, f"catch-up exited {code}:\n{run.tail()}"
    return run


def query(dsn: str, sql: str, params=()) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def wait_for(check, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def assert_exactly_once(dsn: str, acked_plays: set, dead_letters: int) -> None:
    """Acknowledged plays == rows, no key twice, and exactly the injected dead letters."""
    rows = query(dsn, "select user_id, (extract(epoch from played_at) * 1000)::bigint, track_id from raw.plays")
    assert len(rows) == len(set(rows)), "a play was written twice"
    (total, distinct), = query(dsn, "select count(*), count(distinct (user_id, played_at, track_id)) from raw.plays")
    assert total == distinct
    missing = acked_plays - set(rows)
    extra = set(rows) - acked_plays
    assert not missing and not extra, f"{len(missing)} acknowledged plays missing, {len(extra)} unexpected rows"
    (dead,), = query(dsn, "select count(*) from ops.dead_letters")
    assert dead == dead_letters, f"{dead} dead letters, expected {dead_letters}"
