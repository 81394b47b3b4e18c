"""Three Kafka brokers, one killed with `kill -9` while plays are produced and consumed.

The cluster is the stack's own code (`wrapped_dev.stack.kafka` with three brokers) on free
ports in a temp folder, so the shared broker is not touched; its topics are the real ones,
created by the stack. Plays go in through the real StreamProducer (acks=all, idempotent), in
flushed batches as ingestion sends them (a batch whose flush fails is sent again, as a retried
task would); the real consumer, started by the real supervisor, writes them to a database of
the test's own. The broker leading a plays partition dies mid-stream, more plays follow, and
every play is in raw.plays exactly once, with no restart of the consumer. Then `start` (what
`wrapped up` runs) brings the dead broker back.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import replace

from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from weekly_wrapped import contracts
from weekly_wrapped.ingest.producer import DeliveryFailed, StreamProducer
from weekly_wrapped.streaming import process, supervisor
from weekly_wrapped.streaming.supervisor import ConsumerConfig
from wrapped_dev.config import KAFKA_PORT_STEP, load_settings
from wrapped_dev.stack import kafka as stack_kafka

from tests.support.messages import play
from tests.support.ports import free_port

from consumer_helpers import assert_exactly_once, query, wait_for

BROKERS = 3
BATCH = 1_000  # plays per flush, as one ingestion task sends them
BATCHES_BEFORE, BATCHES_DURING, BATCHES_AFTER = 10, 20, 5


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_base(taken: set[int]) -> int:
    """A port p with p, p + 10 and p + 20 free: the nodes' ports (wrapped_dev.config.kafka_node_ports)."""
    while True:
        base = free_port()
        ports = {base + KAFKA_PORT_STEP * i for i in range(BROKERS)}
        if not ports & taken and all(_port_free(p) for p in ports):
            taken |= ports
            return base


def cluster_settings(state_dir):
    taken: set[int] = set()
    settings = replace(load_settings(), state_dir=state_dir, kafka_brokers=BROKERS,
                       kafka_port=_free_base(taken), kafka_controller_port=_free_base(taken))
    return replace(settings, kafka_bootstrap=stack_kafka.local_bootstrap(settings))


class BatchedIngest:
    """Produces plays in flushed batches in a thread; a batch whose flush fails is sent again."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.acked: set = set()
        self.batches_done = 0
        self.done_at: list[float] = []  # monotonic time each batch was acknowledged
        self.retried_batches = 0
        self.errors: list[str] = []

    def send_batches(self, first: int, count: int, pause: float = 0.0) -> None:
        for b in range(first, first + count):
            plays = [play(f"listener-{i % 50}", i) for i in range(b * BATCH, (b + 1) * BATCH)]
            while True:
                producer = StreamProducer({"bootstrap.servers": self.bootstrap})
                for message in plays:
                    producer.send(contracts.PLAYS_TOPIC, message)
                try:
                    producer.flush(60)
                    break
                except DeliveryFailed as exc:
                    self.retried_batches += 1
                    self.errors.append(str(exc))
                    assert self.retried_batches < 5, f"a batch keeps failing: {self.errors}"
            self.acked |= {(p["user_id"], p["played_at"], p["track_id"]) for p in plays}
            self.batches_done += 1
            self.done_at.append(time.monotonic())
            time.sleep(pause)


def plays_in(dsn: str) -> int:
    try:
        return query(dsn, "select count(*) from raw.plays")[0][0]
    except Exception:  # the consumer has not created the tables yet
        return 0


def check_replication(bootstrap: str) -> None:
    """Every topic has three replicas per partition and min.insync.replicas=2; so do the internal ones."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = admin.list_topics(timeout=10).topics
    for name, partitions in stack_kafka.TOPIC_PARTITIONS.items():
        assert len(topics[name].partitions) == partitions
        assert all(len(p.replicas) == 3 for p in topics[name].partitions.values()), name
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in stack_kafka.TOPIC_PARTITIONS]
    for resource, future in admin.describe_configs(resources).items():
        assert future.result(30)["min.insync.replicas"].value == "2", resource
    (broker,) = admin.describe_configs([ConfigResource(ResourceType.BROKER, "1")]).values()
    config = broker.result(30)
    for key, value in [("offsets.topic.replication.factor", "3"), ("transaction.state.log.replication.factor", "3"),
                       ("transaction.state.log.min.isr", "2"), ("default.replication.factor", "3"),
                       ("min.insync.replicas", "2")]:
        assert config[key].value == value, key


def leader_of_plays_partition_0(bootstrap: str) -> int:
    topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    return topics[contracts.PLAYS_TOPIC].partitions[0].leader


def test_a_broker_killed_while_producing_and_consuming_loses_and_duplicates_nothing(
        postgres, spark, consumer_db, tmp_path):
    cluster = cluster_settings(tmp_path / "stack")
    _, dsn = consumer_db
    config = ConsumerConfig(dsn, cluster.kafka_bootstrap, tmp_path / "consumer", spark.master, "1g")
    config.work_dir.mkdir(parents=True)
    config.jars_dir.symlink_to(spark.jars_dir)
    # The broker's jars as the stack resolved them (not resolved again into the temp folder).
    (cluster.state_dir / "jars").mkdir(parents=True)
    (cluster.state_dir / "jars" / "kafka").symlink_to(stack_kafka.ensure_jars(load_settings()))
    ingest = BatchedIngest(cluster.kafka_bootstrap)
    try:
        stack_kafka.start(cluster)
        check_replication(cluster.kafka_bootstrap)

        pid = supervisor.start(config)  # Spark starts while the first plays are produced
        ingest.send_batches(0, BATCHES_BEFORE)
        wait_for(lambda: plays_in(dsn) > 0, 360, "the consumer's first plays", interval=0.2)

        # Mid-production (a thread keeps sending batches) and mid-consumption.
        during = threading.Thread(target=ingest.send_batches, args=(BATCHES_BEFORE, BATCHES_DURING, 0.1))
        during.start()
        wait_for(lambda: ingest.batches_done >= BATCHES_BEFORE + 3, 120, "batches while consuming", interval=0.05)
        victim = next(n for n in stack_kafka.nodes(cluster)
                      if n.node_id == leader_of_plays_partition_0(cluster.kafka_bootstrap))
        os.killpg(process.read_pid(victim.service), signal.SIGKILL)
        killed_at, killed_after = time.monotonic(), ingest.batches_done
        during.join(180)
        assert not during.is_alive(), "producing stalled after the broker died"
        assert killed_after < BATCHES_BEFORE + BATCHES_DURING, "the broker died after producing ended"

        ingest.send_batches(BATCHES_BEFORE + BATCHES_DURING, BATCHES_AFTER)  # with one broker down
        total = (BATCHES_BEFORE + BATCHES_DURING + BATCHES_AFTER) * BATCH
        wait_for(lambda: plays_in(dsn) >= total, 240, f"{total} plays in raw.plays", interval=0.5)
        assert len(ingest.acked) == total
        assert_exactly_once(dsn, ingest.acked, dead_letters=0)
        assert supervisor.our_consumer_pid(config) == pid, "the consumer had to be restarted"
        acked_after_kill = next(t for t in ingest.done_at if t > killed_at) - killed_at
        print(f"killed broker {victim.node_id} after {killed_after} batches; next batch acknowledged "
              f"{acked_after_kill:.1f} s later; batches sent again: {ingest.retried_batches}")

        # `wrapped up` starts only the dead broker (start returns once all three are registered).
        assert not stack_kafka.is_running(cluster)
        stack_kafka.start(cluster)
        assert stack_kafka.is_running(cluster)
    finally:
        supervisor.stop(config)
        stack_kafka.stop(cluster)


def test_three_brokers_are_three_voters_with_ports_a_step_apart(monkeypatch, tmp_path):
    """WRAPPED_KAFKA_BROKERS=3: the bootstrap lists all three, each node its own folder, service and
    ports, every node votes, and internal topics replicate like the stack's own; one broker stays as it was."""
    from wrapped_dev import config

    monkeypatch.setattr(config, "_DOTENV", {})
    for name in ("WRAPPED_KAFKA_PORT", "WRAPPED_KAFKA_CONTROLLER_PORT", "WRAPPED_KAFKA_BOOTSTRAP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WRAPPED_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("WRAPPED_KAFKA_BROKERS", "3")
    settings = config.load_settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9102,127.0.0.1:9112"
    nodes = stack_kafka.nodes(settings)
    assert [(n.node_id, n.port, n.controller_port, n.service.name) for n in nodes] == [
        (1, 9092, 9093, "kafka"), (2, 9102, 9103, "kafka-2"), (3, 9112, 9113, "kafka-3")]
    assert len({n.root for n in nodes}) == 3
    properties = dict(line.split("=", 1) for line in
                      stack_kafka._write_config(settings, nodes[1]).read_text().splitlines() if line)
    assert properties["node.id"] == "2"
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:9093,2@127.0.0.1:9103,3@127.0.0.1:9113"
    assert properties["listeners"] == "PLAINTEXT://127.0.0.1:9102,CONTROLLER://127.0.0.1:9103"
    for key, value in [("offsets.topic.replication.factor", "3"), ("transaction.state.log.min.isr", "2"),
                       ("default.replication.factor", "3"), ("min.insync.replicas", "2")]:
        assert properties[key] == value, key

    monkeypatch.setenv("WRAPPED_KAFKA_BROKERS", "1")
    single = config.load_settings()
    (node,) = stack_kafka.nodes(single)
    assert (single.kafka_bootstrap, node.root, node.service.name) == ("127.0.0.1:9092", tmp_path / "kafka", "kafka")
    properties = stack_kafka._write_config(single, node).read_text()
    assert "controller.quorum.bootstrap.servers=127.0.0.1:9093" in properties
    assert "offsets.topic.replication.factor=1" in properties
    assert not stack_kafka.is_external(single)

    # A cluster of one's own: the stack starts no broker and reports that cluster.
    monkeypatch.setenv("WRAPPED_KAFKA_BOOTSTRAP", "b1:9092,b2:9092")
    yours = config.load_settings()
    assert stack_kafka.is_external(yours)
    assert [(name, where) for name, _, where in stack_kafka.status_rows(yours)] == [
        ("kafka (yours)", "b1:9092,b2:9092")]
