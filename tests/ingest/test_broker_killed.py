"""Kill the Kafka broker in the middle of ingestion's flush: the cursor stays, the retry delivers.

The shared broker serves everyone else, so this test runs a private single-node KRaft broker
of its own (the stack's jars, its own ports and data folder), SIGKILLs it while
`StreamProducer.flush()` waits for acknowledgements, restarts it on the same data, and retries.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from weekly_wrapped import contracts
from weekly_wrapped.ingest import producer
from wrapped_dev.stack import kafka as stack_kafka

from tests.support.kafka import create_topics
from tests.support.ports import free_port


class PrivateBroker:
    def __init__(self, settings, root):
        self.jars = stack_kafka.jar_dir(settings)
        self.root = root
        self.port, self.controller = free_port(), free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.config = root / "server.properties"
        self.config.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER", "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={root / 'data'}", "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
            "auto.create.topics.enable=false", "",
        ]))
        self.proc: subprocess.Popen | None = None
        subprocess.run(self._java("kafka.tools.StorageTool", "format", "-t", "TestClusterIdForIngest1",
                                  "-c", str(self.config), "--standalone"), check=True, capture_output=True)

    def _java(self, main, *args):
        return ["java", "-Xms256m", "-Xmx256m", "-cp", f"{self.jars}/*", main, *args]

    def start(self) -> None:
        log = open(self.root / "broker.log", "ab")
        self.proc = subprocess.Popen(self._java("kafka.Kafka", str(self.config)), stdout=log, stderr=log,
                                     start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2)
                return
            except Exception:
                assert self.proc.poll() is None, (self.root / "broker.log").read_text()[-3000:]
                time.sleep(0.5)
        raise TimeoutError("private Kafka broker did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture
def private_broker(settings, tmp_path):
    stack_kafka.ensure_jars(settings)  # the stack's broker jars, resolved if missing
    broker = PrivateBroker(settings, tmp_path)
    broker.start()
    yield broker
    broker.kill()


def test_broker_killed_mid_flush_then_retry_from_the_same_cursor(make_ingest_env, private_broker, monkeypatch):
    env = make_ingest_env()
    # The env's topics, on the private broker instead.
    create_topics(private_broker.bootstrap, {name: 1 for name in env.topics.values()})
    kafka_config = {"bootstrap.servers": private_broker.bootstrap, "message.timeout.ms": 3000,
                    "linger.ms": 500}  # messages wait in the queue: the kill lands inside the flush
    ana, marcus, yuki = env.user_ids

    real_flush = producer.StreamProducer.flush
    kills = []

    def flush_with_a_crash(self, timeout_s=60.0):
        if not kills:
            kills.append(time.monotonic())
            private_broker.kill()
        return real_flush(self, timeout_s)

    monkeypatch.setattr(producer.StreamProducer, "flush", flush_with_a_crash)
    outcomes = env.run([ana], kafka_config=kafka_config)
    assert kills and outcomes[ana].outcome == "failed" and outcomes[ana].delivery_failed
    assert env.cursor(ana) is None  # nothing acknowledged for sure, so nothing moved

    # Airflow's retry: the broker is back (same data), the same cursor, everything delivered.
    monkeypatch.setattr(producer.StreamProducer, "flush", real_flush)
    private_broker.start()
    outcomes = env.run([ana], kafka_config={"bootstrap.servers": private_broker.bootstrap})
    assert outcomes[ana].outcome == "ok" and outcomes[ana].plays == 50

    c = Consumer({"bootstrap.servers": private_broker.bootstrap, "group.id": uuid.uuid4().hex})
    name = env.topics[contracts.PLAYS_TOPIC]
    _, high = c.get_watermark_offsets(TopicPartition(name, 0), timeout=10)
    c.assign([TopicPartition(name, 0, 0)])
    plays = [json.loads(c.poll(10).value()) for _ in range(high)]
    c.close()
    keys = env.natural_keys(plays)
    # Whatever got through before the kill is repeated with the same natural key: one row downstream.
    assert len(set(keys)) == 50 and env.cursor(ana) == max(k[1] for k in keys)
